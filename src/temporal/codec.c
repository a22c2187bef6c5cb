/* codec.c - the encodings the HTTP API needs (base64 payloads, RFC 3339
 * timestamps, URL escaping, request UUIDs, enum names) and the decoding of
 * its replies into a dd_temporal_result. Pure functions, unit-tested in
 * tests/unit/test_temporal_codec.c and fuzzed by tests/fuzz/
 * fuzz_temporal_codec.c and fuzz_temporal_reply.c. */
#include "temporal/codec.h"

#include "core/buf.h"
#include "core/error.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void dd_tc_base64_encode(dd_buf *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], b64[(v >> 6) & 63], b64[v & 63]};
        dd_buf_append(out, q, 4);
    }
    if (i < len) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0);
        char q[4] = {b64[v >> 18], b64[(v >> 12) & 63], i + 1 < len ? b64[(v >> 6) & 63] : '=',
                     '='};
        dd_buf_append(out, q, 4);
    }
}

static int dd_tc_b64val(char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    if (p)
        return (int)(p - b64);
    if (c == '-') /* tolerate the URL-safe alphabet too */
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int dd_tc_base64_decode(dd_buf *out, const char *s)
{
    unsigned v = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        int d = dd_tc_b64val(*s);
        if (d < 0)
            return DD_EPROTO;
        v = (v << 6) | (unsigned)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            dd_buf_putc(out, (char)((v >> bits) & 0xff));
        }
    }
    return 0;
}

int64_t dd_tc_parse_time_ns(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return 0;
    /* timegm would normalise 2026-13-01 into 2027-01-01: refuse instead. */
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
        sec < 0 || sec > 60)
        return 0;
    s += n;
    int64_t frac = 0;
    if (*s == '.') {
        int digits = 0;
        for (s++; isdigit((unsigned char)*s); s++, digits++) {
            if (digits < 9)
                frac = frac * 10 + (*s - '0');
        }
        for (; digits < 9; digits++)
            frac *= 10;
    }
    int off = 0;
    if (*s == '+' || *s == '-') {
        int oh, om;
        if (sscanf(s + 1, "%2d:%2d", &oh, &om) != 2 || oh < 0 || oh > 23 || om < 0 || om > 59)
            return 0;
        off = (oh * 60 + om) * 60 * (*s == '-' ? -1 : 1);
    } else if (*s != 'Z' && *s != 'z') {
        return 0;
    }
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                    .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    int64_t t = (int64_t)timegm(&tm) - off;
    /* int64 nanoseconds reach only 1677-09-21 .. 2262-04-11; years outside
     * (Go's zero time 0001-01-01, which servers send for unset times) would
     * overflow the multiply. 0 to 999999999 frac never underflows. */
    const int64_t ns = 1000000000LL;
    if (t < INT64_MIN / ns || t > (INT64_MAX - frac) / ns)
        return 0;
    return t * ns + frac;
}

size_t dd_tc_json_cost(const char *s, size_t n, size_t limit)
{
    /* malloc chunks of jansson's structs with their first tables: an object
     * is json_object_t (80) + 8 hashtable buckets (144); a member a pair_t
     * (64 + key, counted with the key's string) + its share of the buckets
     * as they double; an array is json_array_t (48) + 8 slots (80); a string
     * json_string_t (48) + its copy (>= 32); a number 32. SLOT: the pointer
     * to each value in its array, doubling. Rounded up generously. */
    enum { OBJECT = 256, MEMBER = 64, ARRAY = 160, STRING = 96, SCALAR = 48, SLOT = 16 };
    size_t cost = 0;
    bool in_str = false, esc = false, want_value = true;
    for (size_t i = 0; i < n && cost <= limit; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
            cost++; /* its copy; escapes only make it shorter */
            continue;
        }
        switch (ch) {
        case ' ': case '\t': case '\r': case '\n':
            break;
        case '"': /* keys too */
            in_str = true;
            cost += STRING + SLOT;
            want_value = false;
            break;
        case '{':
            cost += OBJECT + SLOT;
            want_value = false; /* a key or '}' follows */
            break;
        case '[':
            cost += ARRAY + SLOT;
            want_value = true;
            break;
        case ':':
            cost += MEMBER;
            want_value = true;
            break;
        case ',':
            want_value = true;
            break;
        case ']': case '}':
            want_value = false;
            break;
        default: /* a number, true, false or null starts (or goes on) */
            if (want_value)
                cost += SCALAR + SLOT;
            want_value = false;
        }
    }
    return cost <= limit ? cost : limit + 1;
}

void dd_tc_url_escape(dd_buf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
            dd_buf_putc(out, (char)c);
        else
            dd_buf_printf(out, "%%%02X", c);
    }
}

void dd_tc_uuid4(dd_rng *rng, char out[37])
{
    uint64_t a = dd_rng_next(rng), b = dd_rng_next(rng);
    a = (a & ~0xf000ULL) | 0x4000ULL;                      /* version 4 */
    b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL; /* variant 10 */
    snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xffff), (unsigned)(a & 0xffff), (unsigned)(b >> 48),
             (unsigned long long)(b & 0xffffffffffffULL));
}

int dd_tc_enum_name(dd_buf *out, const char *prefix, const char *name)
{
    size_t pl = strlen(prefix);
    if (!name || !*name)
        return DD_EINVAL;
    if (strncmp(name, prefix, pl) != 0)
        dd_buf_puts(out, prefix);
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_')
            return DD_EINVAL;
        dd_buf_putc(out, (char)toupper((unsigned char)*p));
    }
    return 0;
}

/* ---------------------------------------------------------------- payloads */

json_t *dd_tc_payload(json_t *value)
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

int dd_tc_payloads(const char *json_text, const char *what, json_t **out, dd_buf *err)
{
    json_error_t je;
    json_t *v = json_loads(json_text, JSON_DECODE_ANY, &je);
    if (!v) {
        dd_buf_printf(err, "%s is not valid JSON: %s", what, je.text);
        return DD_EINVAL;
    }
    *out = json_pack("{s:[o]}", "payloads", dd_tc_payload(v));
    json_decref(v);
    return 0;
}

/* ----------------------------------------------------------------- replies */

static const char *const dd_tc_op_names[DD_TC_NOPS] = {
    "start", "signal_with_start", "signal", "terminate", "describe", "history", "wait_close",
    "list"};

const char *dd_tc_op_name(dd_tc_op op)
{
    return (unsigned)op < DD_TC_NOPS ? dd_tc_op_names[op] : "unknown";
}

size_t dd_tc_max_body(dd_tc_op op)
{
    switch (op) {
    case DD_TC_START:
    case DD_TC_SWS:
    case DD_TC_SIGNAL:
    case DD_TC_TERMINATE:
        return 64u << 10; /* a run id, or nothing; an error is a message and details */
    case DD_TC_DESCRIBE:
        return 1u << 20; /* one execution, its memo, pending activities and children */
    case DD_TC_WAIT_CLOSE:
    case DD_TC_LIST:
        return 4u << 20; /* one close event (a result payload is at most 2 MB by
                          * default: 2.7 MB in base64); one page of executions */
    case DD_TC_HISTORY:
        return DD_TC_MAX_BODY; /* one page of events, payloads included */
    }
    return 64u << 10;
}

/* Strings a result points to that outlive the reply they came from (history
 * events: each page is freed once read). Blocks never move. */
struct dd_tc_strblock {
    struct dd_tc_strblock *next;
    size_t used, cap;
    char data[];
};

static const char *dd_tc_jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : NULL;
}

/* proto3 JSON writes int64 as a string; accept both. */
static int64_t dd_tc_jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

/* A copy of s in d->strs (NULL for NULL), alive until d is released. */
static const char *dd_tc_arena_str(dd_tc_reply *d, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    dd_tc_strblock *b = d->strs;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        b = dd_xmalloc(sizeof(*b) + cap);
        b->next = d->strs;
        b->used = 0;
        b->cap = cap;
        d->strs = b;
    }
    char *p = b->data + b->used;
    memcpy(p, s, n);
    b->used += n;
    return p;
}

/* A string the result points to: kept alive in d->keep. */
static const char *dd_tc_keep_str(dd_tc_reply *d, const char *s, size_t n)
{
    json_t *js = json_stringn_nocheck(s, n);
    json_array_append_new(d->keep, js);
    return json_string_value(js);
}

/* Decodes a json/plain payload; a JSON string yields its value, anything
 * else its JSON text. NULL if undecodable. A server that ignored our Accept
 * header sends the "shorthand" form (the JSON value itself): take it as is. */
static const char *dd_tc_payload_text(dd_tc_reply *d, json_t *p)
{
    dd_buf raw = DD_BUF_INIT;
    const char *res = NULL;
    json_t *v = NULL;
    if (json_is_object(p) && json_object_get(p, "metadata")) {
        const char *data = dd_tc_jstr(p, "data");
        if (!data || dd_tc_base64_decode(&raw, data) < 0)
            goto out;
        v = json_loadb(raw.data ? raw.data : "", raw.len, JSON_DECODE_ANY, NULL);
    } else {
        v = json_incref(p);
    }
    if (json_is_string(v)) {
        res = dd_tc_keep_str(d, json_string_value(v), json_string_length(v));
    } else if (v) {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        res = dd_tc_keep_str(d, text, strlen(text));
        free(text);
    }
out:
    json_decref(v);
    dd_buf_release(&raw);
    return res;
}

static dd_temporal_status dd_tc_parse_status(json_t *v)
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

/* WorkflowExecutionInfo (describe's workflowExecutionInfo, list's executions[]). */
static void dd_tc_parse_exec(dd_tc_reply *d, json_t *info, dd_temporal_execution *e)
{
    json_t *ex = json_object_get(info, "execution");
    json_t *tq = json_object_get(info, "taskQueue");
    memset(e, 0, sizeof(*e));
    e->workflow_id = dd_tc_jstr(ex, "workflowId");
    e->run_id = dd_tc_jstr(ex, "runId");
    e->type = dd_tc_jstr(json_object_get(info, "type"), "name");
    e->task_queue = json_is_string(tq) ? json_string_value(tq) : dd_tc_jstr(tq, "name");
    e->status = dd_tc_parse_status(json_object_get(info, "status"));
    e->start_ns = dd_tc_parse_time_ns(dd_tc_jstr(info, "startTime"));
    e->close_ns = dd_tc_parse_time_ns(dd_tc_jstr(info, "closeTime"));
    e->first_run_id = dd_tc_jstr(info, "firstRunId");
    e->history_length = dd_tc_jint(info, "historyLength");
    json_t *fields = json_object_get(json_object_get(info, "memo"), "fields");
    json_t *sid = json_object_get(fields, "server_id");
    json_t *mp = json_object_get(fields, "project");
    json_t *mq = json_object_get(fields, "queue");
    e->server_id = sid ? dd_tc_payload_text(d, sid) : NULL;
    e->memo_project = mp ? dd_tc_payload_text(d, mp) : NULL;
    e->memo_queue = mq ? dd_tc_payload_text(d, mq) : NULL;
}

/* Appends a page's events, their strings copied out (the page is freed
 * after this); last_only: just the page's last event, in place of any
 * before (wait_close asks for the close event only). DD_EPROTO past
 * DD_TC_MAX_EVENTS. */
static int dd_tc_add_events(dd_tc_reply *d, json_t *events, bool last_only)
{
    size_t i, n = json_array_size(events);
    json_t *ev;
    json_array_foreach(events, i, ev) {
        if (last_only && i + 1 < n)
            continue;
        if (last_only)
            d->nevents = 0;
        if (d->nevents == DD_TC_MAX_EVENTS) {
            dd_buf_printf(&d->msg, "history of workflow '%s' has more than %d events",
                          d->workflow_id ? d->workflow_id : "", DD_TC_MAX_EVENTS);
            return DD_EPROTO;
        }
        if (d->nevents == d->capevents) {
            d->capevents = d->capevents ? d->capevents * 2 : 16;
            d->events = dd_xrealloc(d->events, d->capevents * sizeof(*d->events));
        }
        dd_temporal_event *e = &d->events[d->nevents++];
        memset(e, 0, sizeof(*e));
        e->id = dd_tc_jint(ev, "eventId");
        e->type = dd_tc_arena_str(d, dd_tc_jstr(ev, "eventType"));
        e->time_ns = dd_tc_parse_time_ns(dd_tc_jstr(ev, "eventTime"));
        json_t *ta = json_object_get(ev, "workflowExecutionTerminatedEventAttributes");
        if (!ta)
            ta = json_object_get(ev, "workflowExecutionStartedEventAttributes");
        e->reason = dd_tc_arena_str(d, dd_tc_jstr(ta, "reason"));
        e->identity = dd_tc_arena_str(d, dd_tc_jstr(ta, "identity"));
        json_t *ca = json_object_get(ev, "workflowExecutionContinuedAsNewEventAttributes");
        e->new_run_id = dd_tc_arena_str(d, dd_tc_jstr(ca, "newExecutionRunId"));
    }
    return 0;
}

/* A 2xx reply. Returns 0 (done), 1 (send another request: next page or
 * re-poll), or < 0 with d->msg set. */
static int dd_tc_decode_ok(dd_tc_reply *d, json_t *root)
{
    const char *tok;
    switch (d->op) {
    case DD_TC_START:
    case DD_TC_SWS:
        d->res.run_id = dd_tc_jstr(root, "runId");
        /* signal-with-start on 1.2x omits "started" when it only signalled */
        d->res.started = json_is_true(json_object_get(root, "started"));
        if (!d->res.run_id) {
            dd_buf_printf(&d->msg, "start of workflow '%s' answered without a run id",
                          d->workflow_id ? d->workflow_id : "");
            return DD_EPROTO;
        }
        return 0;
    case DD_TC_SIGNAL:
    case DD_TC_TERMINATE:
        return 0;
    case DD_TC_DESCRIBE:
        dd_tc_parse_exec(d, json_object_get(root, "workflowExecutionInfo"), &d->exec);
        {
            json_t *wft = json_object_get(root, "pendingWorkflowTask");
            const char *st = dd_tc_jstr(wft, "state");
            d->exec.wft_scheduled = st && !strcmp(st, "PENDING_WORKFLOW_TASK_STATE_SCHEDULED");
            if (d->exec.wft_scheduled) {
                const char *t = dd_tc_jstr(wft, "originalScheduledTime");
                d->exec.wft_scheduled_ns =
                    dd_tc_parse_time_ns(t ? t : dd_tc_jstr(wft, "scheduledTime"));
            }
            d->exec.wft_attempt = wft ? dd_tc_jint(wft, "attempt") : 0;
        }
        if (!d->exec.run_id) {
            dd_buf_printf(&d->msg, "describe of workflow '%s' answered without a run id",
                          d->workflow_id ? d->workflow_id : "");
            return DD_EPROTO;
        }
        d->res.execution = &d->exec;
        return 0;
    case DD_TC_HISTORY:
    case DD_TC_WAIT_CLOSE: {
        /* filter type 2 = close event only: wait_close keeps just the last */
        int rc = dd_tc_add_events(d, json_object_get(json_object_get(root, "history"), "events"),
                                  d->op == DD_TC_WAIT_CLOSE);
        if (rc < 0)
            return rc;
        tok = dd_tc_jstr(root, "nextPageToken");
        free(d->page_token);
        d->page_token = tok ? dd_strdup(tok) : NULL;
        if (d->op == DD_TC_WAIT_CLOSE)
            return d->nevents > 0 ? 0 : 1; /* empty long-poll answer: ask again */
        if (tok && ++d->pages < DD_TC_MAX_PAGES)
            return 1;
        return 0;
    }
    case DD_TC_LIST: {
        json_t *arr = json_object_get(root, "executions"), *ex;
        size_t i;
        free(d->execs); /* a retried list decodes a later reply afresh */
        d->nexecs = json_array_size(arr);
        d->execs = dd_xcalloc(d->nexecs ? d->nexecs : 1, sizeof(*d->execs));
        json_array_foreach(arr, i, ex) dd_tc_parse_exec(d, ex, &d->execs[i]);
        d->res.next_page_token = dd_tc_jstr(root, "nextPageToken");
        return 0;
    }
    }
    return 0;
}

/* Maps an error reply. Sets *retry for statuses worth another attempt. */
static int dd_tc_decode_error(dd_tc_reply *d, long http, json_t *root, bool *retry)
{
    const char *smsg = dd_tc_jstr(root, "message");
    json_t *details = json_object_get(root, "details"), *dt;
    const char *dtype = NULL, *drun = NULL;
    size_t i;
    json_array_foreach(details, i, dt) {
        dtype = dd_tc_jstr(dt, "@type");
        if (!drun)
            drun = dd_tc_jstr(dt, "runId");
    }
    d->res.grpc_code = (int)json_integer_value(json_object_get(root, "code"));
    if (!smsg)
        smsg = "(no message)";
    *retry = false;
    if (http == 404 && ((dtype && strstr(dtype, "NamespaceNotFound")) ||
                        (strstr(smsg, "amespace") && strstr(smsg, "not found")))) {
        dd_buf_printf(&d->msg, "namespace '%s' not found", d->ns ? d->ns : "");
        return DD_ENOTFOUND;
    }
    if (http == 404) {
        dd_buf_printf(&d->msg, "workflow '%s'%s%s%s: %s", d->workflow_id ? d->workflow_id : "",
                      d->run_id ? " run '" : "", d->run_id ? d->run_id : "",
                      d->run_id ? "'" : "", smsg);
        return DD_ENOTFOUND;
    }
    if (http == 409) {
        d->res.run_id = drun;
        dd_buf_printf(&d->msg, "workflow '%s' already running as run '%s'",
                      d->workflow_id ? d->workflow_id : "", drun ? drun : "?");
        return DD_ECONFLICT;
    }
    if (http == 400) {
        dd_buf_printf(&d->msg, "bad request (%s): %s", dd_tc_op_name(d->op), smsg);
        return DD_EINVAL;
    }
    if (http == 401 || http == 403) {
        dd_buf_printf(&d->msg, "permission denied by temporal (%ld): %s", http, smsg);
        return -EACCES;
    }
    if (http == 429) {
        *retry = true;
        dd_buf_printf(&d->msg, "rate limited by temporal: %s", smsg);
        return DD_ERATELIMIT;
    }
    if (http >= 500 && http != 501) {
        *retry = true;
        dd_buf_printf(&d->msg, "temporal error (http %ld): %s", http, smsg);
        return DD_EUNAVAIL;
    }
    dd_buf_printf(&d->msg, "unexpected http status %ld from temporal: %s", http, smsg);
    return DD_EHTTP;
}

void dd_tc_reply_init(dd_tc_reply *d, dd_tc_op op, const char *ns, const char *workflow_id,
                      const char *run_id)
{
    memset(d, 0, sizeof(*d));
    d->op = op;
    d->ns = ns;
    d->workflow_id = workflow_id;
    d->run_id = run_id;
    d->keep = json_array();
}

int dd_tc_decode(dd_tc_reply *d, int http_status, const char *body, size_t len, bool *retry)
{
    const char *op = dd_tc_op_name(d->op);
    json_t *root;
    json_error_t je;
    int rc;
    *retry = false;
    dd_buf_reset(&d->msg);
    /* Bounded before parsing (see DD_TC_MAX_BODY): refused, not retried. */
    size_t max = dd_tc_max_body(d->op);
    if (len > max) {
        dd_buf_printf(&d->msg, "temporal reply to %s too large (%zu bytes, limit %zu)", op, len,
                      max);
        return DD_EPROTO;
    }
    if (dd_tc_json_cost(body, len, DD_TC_MAX_PARSE) > DD_TC_MAX_PARSE) {
        dd_buf_printf(&d->msg, "temporal reply to %s (%zu bytes) would take over %u MB to parse",
                      op, len, DD_TC_MAX_PARSE >> 20);
        return DD_EPROTO;
    }
    root = json_loadb(body, len, 0, &je);
    if (http_status >= 200 && http_status < 300) {
        if (!root) {
            dd_buf_printf(&d->msg, "cannot parse temporal reply to %s: %s", op, je.text);
            return DD_EPROTO;
        }
        rc = dd_tc_decode_ok(d, root);
        if (d->op == DD_TC_HISTORY || d->op == DD_TC_WAIT_CLOSE)
            json_decref(root); /* its events were copied out: one page at a time */
        else
            json_array_append_new(d->keep, root); /* results point into it */
        return rc;
    }
    rc = dd_tc_decode_error(d, http_status, root, retry);
    /* The result may point into it (409: the running run id; never retried).
     * A retried error's root is not needed: keeping it would grow a long
     * loss watch with every error it rides out. */
    if (root && !*retry)
        json_array_append_new(d->keep, root);
    else
        json_decref(root);
    return rc;
}

const dd_temporal_result *dd_tc_reply_result(dd_tc_reply *d, int err)
{
    d->res.err = err;
    d->res.message = dd_buf_str(&d->msg);
    if (err == 0) {
        d->res.message = "";
        d->res.events = d->nevents ? d->events : NULL;
        d->res.nevents = d->nevents;
        d->res.executions = d->nexecs ? d->execs : NULL;
        d->res.nexecutions = d->nexecs;
    }
    return &d->res;
}

void dd_tc_reply_release(dd_tc_reply *d)
{
    json_decref(d->keep);
    while (d->strs) {
        dd_tc_strblock *b = d->strs;
        d->strs = b->next;
        free(b);
    }
    free(d->events);
    free(d->execs);
    free(d->page_token);
    dd_buf_release(&d->msg);
    memset(d, 0, sizeof(*d));
}
