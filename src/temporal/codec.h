/* codec.h - internal to src/temporal (and its unit tests and fuzz targets):
 * the encodings of the Temporal HTTP API, and the decoding of its replies.
 *
 * Pure: nothing here knows about HTTP connections, libuv, retries or
 * deadlines (temporal.c owns those). Appends go to a dd_buf the caller owns
 * and releases. A reply is decoded from its bytes and HTTP status into a
 * dd_tc_reply, which owns everything its result points to. */
#ifndef DD_TEMPORAL_CODEC_H
#define DD_TEMPORAL_CODEC_H

#include "core/buf.h"
#include "core/time.h"
#include "temporal/temporal.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Standard base64 with padding. */
void dd_tc_base64_encode(struct dd_buf *out, const void *data, size_t len);
/* Accepts standard or URL-safe alphabet, padding optional. 0, or DD_EPROTO
 * on a bad character (out may hold a prefix then). */
int dd_tc_base64_decode(struct dd_buf *out, const char *s);
/* RFC 3339 ("2026-11-23T12:33:05.835655703Z", offsets allowed) to Unix ns;
 * 0 when s is NULL, malformed (a field out of range included), or outside
 * what int64 nanoseconds hold (1677-09-21T00:12:44Z .. 2262-04-11T23:47:16Z,
 * so Go's zero time 0001-01-01T00:00:00Z is 0 too). */
int64_t dd_tc_parse_time_ns(const char *s);
/* About how many heap bytes jansson (2.14, 64-bit) takes to parse the JSON
 * text s[0..n): per object, member, array, string (plus its bytes) and
 * scalar, rounded up so that the real figure stays below it. A reply can
 * cost ~100 times its size ("[{},{},...]"), so a parse is refused when this
 * is over budget. Stops counting once past limit (returns a value > limit).
 * Pure: the text is not validated (jansson does that). */
size_t dd_tc_json_cost(const char *s, size_t n, size_t limit);
/* Percent-encodes everything but RFC 3986 unreserved characters: safe for a
 * path segment and a query value alike. */
void dd_tc_url_escape(struct dd_buf *out, const char *s);
/* A random (version 4) UUID, 36 chars + NUL. */
void dd_tc_uuid4(dd_rng *rng, char out[37]);
/* "terminate_existing" -> "<prefix>TERMINATE_EXISTING"; a name that already
 * carries prefix is kept. DD_EINVAL for an empty name or one with other
 * than [A-Za-z0-9_]. */
int dd_tc_enum_name(struct dd_buf *out, const char *prefix, const char *name);

/* ---- request payloads ---- */

/* One json/plain payload object ({"metadata":{"encoding":..},"data":..})
 * for a JSON value (borrowed). A new reference. */
json_t *dd_tc_payload(json_t *value);
/* {"payloads":[<payload of json_text>]} into *out (a new reference); what
 * names the text in the message ("workflow input"). DD_EINVAL with the
 * reason appended to err when json_text is not JSON. */
int dd_tc_payloads(const char *json_text, const char *what, json_t **out, struct dd_buf *err);

/* ---- replies ---- */

/* The operations, each decoded its own way. */
typedef enum dd_tc_op {
    DD_TC_START,
    DD_TC_SWS, /* signal-with-start */
    DD_TC_SIGNAL,
    DD_TC_TERMINATE,
    DD_TC_DESCRIBE,
    DD_TC_HISTORY,
    DD_TC_WAIT_CLOSE,
    DD_TC_LIST,
} dd_tc_op;
#define DD_TC_NOPS 8

/* "start", "signal_with_start", ... (metric labels, messages). Static. */
const char *dd_tc_op_name(dd_tc_op op);

/* Memory per operation (temporal.h states these bounds). A reply is
 * buffered whole by the transport (at most DD_TC_MAX_BODY: the largest any
 * operation takes), then checked against the operation's own limit
 * (dd_tc_max_body) and parsed only if jansson's cost for it stays within
 * DD_TC_MAX_PARSE (dd_tc_json_cost): 16 MiB of "{}," costs ~1.6 GB parsed.
 * A hostile 16 MiB reply thus costs at most DD_TC_MAX_BODY + DD_TC_MAX_PARSE
 * (< 64 MB, bench/hostile/RESULTS.md). History pages are dropped once their
 * events are copied out, so a call holds one page at a time, and at most
 * DD_TC_MAX_EVENTS events. */
#define DD_TC_MAX_BODY (16u << 20)
#define DD_TC_MAX_PARSE (32u << 20)
#define DD_TC_MAX_PAGES 1000   /* history pages followed by one call */
#define DD_TC_MAX_EVENTS 51200 /* Temporal's own default limit of events per history */

/* The largest reply body op accepts (error replies included). */
size_t dd_tc_max_body(dd_tc_op op);

typedef struct dd_tc_strblock dd_tc_strblock;

/* What the replies of one call decoded to. The strings, events and
 * executions of res live in here (keep, strs, events, execs) until
 * dd_tc_reply_release(). workflow_id, run_id and ns are borrowed (for
 * messages) and must outlive it. */
typedef struct dd_tc_reply {
    dd_tc_op op;
    const char *ns;          /* the namespace: "namespace 'x' not found" */
    const char *workflow_id; /* may be NULL */
    const char *run_id;      /* may be NULL */
    dd_temporal_result res;  /* http_status and attempts are the caller's to set */
    dd_buf msg;              /* why it failed; the caller may write its own reasons */
    char *page_token;        /* nextPageToken for the next request (history pages; list:
                              * the caller's); owned, NULL: none */
    int pages;               /* history pages followed */
    json_t *keep;            /* parsed replies and decoded strings res points into */
    dd_tc_strblock *strs;    /* event strings, copied out of freed history pages */
    dd_temporal_event *events;
    size_t nevents, capevents;
    dd_temporal_execution *execs;
    size_t nexecs;
    dd_temporal_execution exec;
} dd_tc_reply;

/* Ready to decode op's replies; release with dd_tc_reply_release(). */
void dd_tc_reply_init(dd_tc_reply *d, dd_tc_op op, const char *ns, const char *workflow_id,
                      const char *run_id);
/* Decodes one HTTP reply (status, body[0..len)) into d. Returns 0: done;
 * 1: send another request (the next history page in d->page_token, or
 * wait_close's re-poll after an empty answer); < 0: failed, d->msg says why
 * and *retry whether another attempt may help (5xx but 501, 429). A body
 * over dd_tc_max_body(op) or DD_TC_MAX_PARSE to parse fails with DD_EPROTO,
 * not retried. d->msg is reset first. */
int dd_tc_decode(dd_tc_reply *d, int http_status, const char *body, size_t len, bool *retry);
/* The result for a call that ended with err (0, DD_E*, -errno): res with
 * err, message ("" on success, else d->msg) and, on success, the events and
 * executions set. Valid until dd_tc_reply_release(). */
const dd_temporal_result *dd_tc_reply_result(dd_tc_reply *d, int err);
void dd_tc_reply_release(dd_tc_reply *d);

#endif
