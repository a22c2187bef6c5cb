/* fuzz_http_parse - src/http/parse.c: the reply bytes are fed whole and
 * again in pieces whose cut points the input chooses, and both must end the
 * same way: result, bytes used, status, keep-alive, body. A split that
 * changes the outcome is a parser that depends on how TCP happened to
 * segment the reply.
 *
 * Input: [flags][ncuts][cut positions: ncuts x u16][reply bytes...]
 *   flags bit 0: HEAD request; bit 1: the peer closes after the bytes;
 *   bit 2: small limits (max_head 64, max_body 32) so limit paths are
 *   reachable; bit 3: parse a second reply on the same (reset) parser. */
#include "fuzz.h"

#include "core/buf.h"
#include "core/error.h"
#include "http/parse.h"

typedef struct outcome {
    int rc;
    size_t used, body_len;
    int status;
    bool keep_alive;
    char *body;
} outcome;

static void run(dd_http_parser *p, const uint8_t *d, size_t n, const size_t *cuts, size_t ncuts,
                bool eof, outcome *o)
{
    size_t from = 0;
    memset(o, 0, sizeof(*o));
    o->rc = DD_HTTP_PARSE_MORE;
    for (size_t i = 0; i <= ncuts && o->rc == DD_HTTP_PARSE_MORE; i++) {
        size_t to = i < ncuts ? cuts[i] : n, used = (size_t)-1;
        o->rc = dd_http_parser_feed(p, (const char *)d + from, to - from, &used);
        FUZZ_CHECK(o->rc == DD_HTTP_PARSE_MORE || o->rc == DD_HTTP_PARSE_DONE ||
                       o->rc == DD_EPROTO,
                   "rc %d", o->rc);
        FUZZ_CHECK(used <= to - from, "used %zu of %zu", used, to - from);
        if (o->rc == DD_HTTP_PARSE_MORE)
            FUZZ_CHECK(used == to - from, "MORE but used %zu of %zu", used, to - from);
        if (o->rc != DD_EPROTO)
            o->used += used;
        from = to;
    }
    if (o->rc == DD_HTTP_PARSE_MORE && eof)
        o->rc = dd_http_parser_eof(p);
    const char *why = dd_http_parser_error(p);
    FUZZ_CHECK((o->rc == DD_EPROTO) == (*why != '\0'), "rc %d, error '%s'", o->rc, why);
    o->status = dd_http_parser_status(p);
    FUZZ_CHECK(o->status == 0 || (o->status >= 100 && o->status <= 599), "status %d", o->status);
    o->keep_alive = dd_http_parser_keep_alive(p);
    const char *b = dd_http_parser_body(p, &o->body_len);
    FUZZ_CHECK(b[o->body_len] == '\0', "body not terminated");
    o->body = malloc(o->body_len + 1);
    memcpy(o->body, b, o->body_len + 1);
}

static void same(const outcome *a, const outcome *b)
{
    FUZZ_CHECK(a->rc == b->rc, "rc %d whole, %d split", a->rc, b->rc);
    if (a->rc == DD_EPROTO)
        return; /* where the bytes stop is not defined for an invalid reply */
    FUZZ_CHECK(a->status == b->status, "status %d whole, %d split", a->status, b->status);
    FUZZ_CHECK(a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0,
               "body %zu whole, %zu split", a->body_len, b->body_len);
    if (a->rc == DD_HTTP_PARSE_DONE) {
        FUZZ_CHECK(a->used == b->used, "used %zu whole, %zu split", a->used, b->used);
        FUZZ_CHECK(a->keep_alive == b->keep_alive, "keep-alive differs");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    uint8_t flags = fuzz_byte(&in);
    size_t ncuts = fuzz_byte(&in) % 8, cuts[8];
    uint16_t raw[8];
    for (size_t i = 0; i < ncuts; i++)
        raw[i] = fuzz_u16(&in);
    for (size_t i = 0; i < ncuts; i++) { /* ascending offsets into the payload */
        cuts[i] = in.n ? raw[i] % (in.n + 1) : 0;
        for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    }
    bool head = flags & 1, eof = flags & 2;
    dd_http_parser_opts opts = {0};
    if (flags & 4)
        opts = (dd_http_parser_opts){.max_head = 64, .max_body = 32};
    dd_http_parser *whole = dd_http_parser_new(&opts), *split = dd_http_parser_new(&opts);
    dd_http_parser_reset(whole, head);
    dd_http_parser_reset(split, head);
    outcome a, b;
    run(whole, in.p, in.n, NULL, 0, eof, &a);
    run(split, in.p, in.n, cuts, ncuts, eof, &b);
    same(&a, &b);
    if (a.rc == DD_EPROTO)
        FUZZ_CHECK(!dd_http_parser_keep_alive(whole), "keep-alive after an error");
    /* the bytes after a complete reply start the next one on a reset parser */
    if ((flags & 8) && a.rc == DD_HTTP_PARSE_DONE && a.used < in.n) {
        dd_buf taken = DD_BUF_INIT;
        dd_http_parser_take_body(whole, &taken);
        FUZZ_CHECK(taken.len == a.body_len, "take_body %zu of %zu", taken.len, a.body_len);
        dd_buf_release(&taken);
        dd_http_parser_reset(whole, false);
        dd_http_parser_reset(split, false);
        outcome c, e;
        size_t rest = in.n - a.used;
        size_t cut = rest / 2;
        run(whole, in.p + a.used, rest, NULL, 0, eof, &c);
        run(split, in.p + a.used, rest, &cut, 1, eof, &e);
        same(&c, &e);
        free(c.body);
        free(e.body);
    }
    free(a.body);
    free(b.body);
    dd_http_parser_free(whole);
    dd_http_parser_free(split);
    return 0;
}
