/* fuzz_store_reply - what src/store/records.c makes of Redis replies: every
 * operation's reply parser (owner writes, fencing answers, HGETALL records,
 * the pipelined stale/list query, leases, the worker registry) gets reply
 * trees that hiredis's own reader builds from the input bytes (RESP2), in
 * the order a connection would deliver them; the result is checked in the
 * user callback.
 *
 * records.c is included here and store.c's request core is replaced by the
 * stubs below (no connection, no loop): a command "sent" by records.c only
 * counts as a reply owed, and replies are handed to op->reply the way
 * store.c's on_reply does (an error reply finishes the request). When the
 * input runs out before the operation is answered it finishes as a timeout.
 *
 * A past finding: a worker or index score that strtod() reads as NaN or
 * beyond int64 (e.g. "1.7e+24") was cast to int64_t (undefined); records.c
 * now refuses such scores, and the reproducers stay in the corpus as
 * finding-records-*.
 *
 * Input: [op][RESP bytes...]. One limit of the harness: hiredis 0.14
 * callocs an array's declared element count up front, so "*2147483647\r\n"
 * asks for 16 GiB before a single element arrives (a hostile server can
 * exhaust a client's memory that way; records.c never sees such a reply).
 * Inputs declaring more than 65536 elements are skipped. */
#include "fuzz.h"

#include "store/records.c" /* the file under test */

#include <ctype.h>

/* ---- stubs for store.c's request core --------------------------------- */

/* struct dd_store comes from store_int.h: the stubs below use none of it. */

static dd_store__req *last; /* the request the operation under test made */

dd_store__req *dd_store__req_new(dd_store *s, const dd_store__op *op, void (*cb)(void), void *arg)
{
    dd_store__req *r = dd_xcalloc(1, sizeof(*r));
    r->s = s;
    r->op = op;
    r->cb = cb;
    r->arg = arg;
    last = r;
    return r;
}

int dd_store__cmd(dd_store__req *r, ...)
{
    r->pending++;
    return 0;
}

int dd_store__cmdv(dd_store__req *r, int argc, const char **argv)
{
    r->pending++;
    return 0;
}

void dd_store__submit(dd_store__req *r)
{
}

void dd_store__abort(dd_store__req *r)
{
    r->done = true;
}

void dd_store__finish(dd_store__req *r, int status)
{
    if (r->done)
        return;
    r->done = true;
    r->op->deliver(r, status);
}

/* --redis-wait-replicas off: no WAIT is added (its reply is not fuzzed) */
int dd_store__add_wait(dd_store__req *r)
{
    (void)r;
    return 0;
}

int dd_store__wait_result(dd_store__req *r, const redisReply *rep)
{
    (void)r;
    (void)rep;
    return 0;
}

int dd_store__check(const dd_store *s)
{
    return s ? 0 : DD_EINVAL;
}

/* the same as store.c's (keys are built before any reply) */
const char *dd_store__key(char *buf, const char *kind, const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 1000)
        return NULL;
    int k = snprintf(buf, DD_STORE__KEYMAX, "dd:%s:{%s}", kind, id);
    return k > 0 && k < DD_STORE__KEYMAX ? buf : NULL;
}

/* store.c's free_result, for the stub request (the records through
 * records.c's own free, so a new field cannot leak here) */
static void req_free(dd_store__req *r)
{
    dd_store__free_recs(r->recs, r->nrecs);
    for (size_t i = 0; i < r->nworkers; i++)
        free((char *)r->workers[i].server_id);
    free(r->workers);
    free(r->str[0]);
    free(r->str[1]);
    free(r);
}

/* ---- result checks ---------------------------------------------------- */

static int calls;

static void touch(const char *s)
{
    if (s)
        FUZZ_CHECK(strlen(s) < (1u << 30), "unterminated string");
}

static void check_hb(const dd_store_hb *h)
{
    FUZZ_CHECK(h->workflow_id != NULL, "a record without a workflow id");
    touch(h->workflow_id);
    touch(h->run_id);
    touch(h->server_id);
    touch(h->project);
    touch(h->queue);
    FUZZ_CHECK(h->malformed == (h->problem != NULL), "malformed %d, problem %p", h->malformed,
               (const void *)h->problem);
    touch(h->problem);
    if (!h->malformed)
        FUZZ_CHECK(h->run_id && *h->run_id && h->server_id && h->project && h->queue,
                   "a well-formed record with a field missing");
}

static void status_cb(int st, void *arg)
{
    calls++;
    FUZZ_CHECK(st <= 0, "status %d", st);
}

static void owner_cb(int st, const dd_store_owner *o, void *arg)
{
    calls++;
    FUZZ_CHECK((o != NULL) == (st == 0 || st == DD_EFENCED), "status %d with owner %p", st,
               (const void *)o);
    if (o) {
        touch(o->server_id);
        touch(o->run_id);
    }
}

static void hb_cb(int st, const dd_store_hb *h, void *arg)
{
    calls++;
    FUZZ_CHECK((h != NULL) == (st == 0), "status %d with record %p", st, (const void *)h);
    if (h)
        check_hb(h);
}

static void list_cb(int st, const dd_store_hb_list *l, void *arg)
{
    calls++;
    FUZZ_CHECK((l != NULL) == (st == 0), "status %d with list %p", st, (const void *)l);
    for (size_t i = 0; l && i < l->n; i++)
        check_hb(&l->items[i]);
}

static void workers_cb(int st, const dd_store_workers *w, void *arg)
{
    calls++;
    FUZZ_CHECK((w != NULL) == (st == 0), "status %d with workers %p", st, (const void *)w);
    for (size_t i = 0; w && i < w->n; i++) {
        FUZZ_CHECK(w->items[i].server_id != NULL, "a worker without a server id");
        touch(w->items[i].server_id);
    }
}

static void oldest_cb(int st, const char *wid, int64_t hb_ms, void *arg)
{
    calls++;
    FUZZ_CHECK((wid != NULL) == (st == 0), "status %d with workflow id %p", st,
               (const void *)wid);
    touch(wid);
}

static void beat_cb(int st, bool added, int64_t owner_ttl_ms, void *arg)
{
    calls++;
    FUZZ_CHECK(st == 0 || (!added && owner_ttl_ms == 0), "status %d with a result", st);
    FUZZ_CHECK(owner_ttl_ms >= 0, "a negative owner ttl %lld", (long long)owner_ttl_ms);
}

/* ---- the operations --------------------------------------------------- */

static int start(dd_store *s, int op)
{
    dd_store_claim_args ca = {"dispatcher-p-q", "run-1", "host-1", "p", "q", 1700000000000, 15000,
                              "run-1", "T", "nonce-1"};
    switch (op) {
    case 0: return dd_store_ping(s, status_cb, NULL);
    case 1: return dd_store_claim(s, &ca, owner_cb, NULL);
    case 2: return dd_store_heartbeat(s, "dispatcher-p-q", "run-1", 7, 1, 15000, owner_cb, NULL);
    case 3: return dd_store_release(s, "dispatcher-p-q", "run-1", 7, owner_cb, NULL);
    case 4: return dd_store_compare_and_delete(s, "dispatcher-p-q", "run-1", 5, status_cb, NULL);
    case 5: return dd_store_stale(s, 1700000000000, 15000, 100, list_cb, NULL);
    case 6: return dd_store_list(s, 0, list_cb, NULL);
    case 7: return dd_store_get(s, "dispatcher-p-q", hb_cb, NULL);
    case 8: return dd_store_oldest(s, 0, oldest_cb, NULL);
    case 9: return dd_store_lease_acquire(s, "failover:w", "host-1", 1000, status_cb, NULL);
    case 10: return dd_store_lease_held(s, "handoff:w:r", status_cb, NULL);
    case 11: return dd_store_lease_release(s, "failover:w", "host-1", status_cb, NULL);
    case 12: return dd_store_worker_beat(s, "dispatcher-p-q", "w1", 1, beat_cb, NULL);
    case 13: return dd_store_worker_deregister(s, "dispatcher-p-q", "w1", status_cb, NULL);
    case 14: return dd_store_worker_list(s, "dispatcher-p-q", workers_cb, NULL);
    default: return dd_store_worker_evict(s, "dispatcher-p-q", "run-1", 7, 1, 10, workers_cb,
                                          NULL);
    }
}

/* True when a RESP array header declares more elements than we let hiredis
 * allocate (see the top). */
static bool huge_array(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '*')
            continue;
        unsigned long long v = 0;
        for (size_t j = i + 1; j < n && isdigit(p[j]) && v <= 65536; j++)
            v = v * 10 + (p[j] - '0');
        if (v > 65536)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    int op = fuzz_byte(&in) % 16;
    if (huge_array(in.p, in.n))
        return 0;
    dd_store store = {0};
    last = NULL;
    calls = 0;
    FUZZ_CHECK(start(&store, op) == 0 && last, "cannot start op %d", op);
    dd_store__req *r = last;
    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, (const char *)in.p, in.n);
    /* replies come in order, one per command sent (store.c's on_reply) */
    while (r->pending > 0 && !r->done) {
        void *reply = NULL;
        if (redisReaderGetReply(rd, &reply) != REDIS_OK) { /* a protocol error: link dropped */
            dd_store__finish(r, DD_EUNAVAIL);
            break;
        }
        if (!reply)
            break;
        redisReply *rep = reply;
        r->pending--;
        r->nreplies++;
        if (rep->type == REDIS_REPLY_ERROR)
            dd_store__finish(r, DD_EPROTO);
        else
            r->op->reply(r, rep);
        freeReplyObject(reply);
    }
    if (!r->done) /* no (complete) answer: the request times out */
        dd_store__finish(r, DD_ETIMEOUT);
    FUZZ_CHECK(calls == 1, "callback ran %d times", calls);
    redisReaderFree(rd);
    req_free(r);
    return 0;
}
