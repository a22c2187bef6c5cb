/* fuzz_metrics_request - libFuzzer target for the /metrics request head
 * parser (src/metrics/http_parse.c), the first code to see a peer's bytes.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Isrc tests/fuzz/fuzz_metrics_request.c \
 *         src/metrics/http_parse.c -o fuzz_metrics_request
 *   ./fuzz_metrics_request tests/fuzz/corpus/fuzz_metrics_request
 *
 * Besides memory errors it checks what http.c relies on: a COMPLETE verdict
 * has slices inside the buffer, an upper-case method, a path starting with
 * '/', and a head ending in CRLF CRLF; a verdict never changes once given
 * (a prefix of a complete head needs more, a BAD prefix stays BAD). */
#include "metrics/http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond))                                                                           \
            abort();                                                                           \
    } while (0)

static void check_complete(const char *buf, size_t len, const dd_metrics_request *r)
{
    CHECK(r->head_len >= 4 && r->head_len <= len);
    CHECK(memcmp(buf + r->head_len - 4, "\r\n\r\n", 4) == 0);
    CHECK(r->method == buf && r->method_len > 0);
    for (size_t i = 0; i < r->method_len; i++)
        CHECK(r->method[i] >= 'A' && r->method[i] <= 'Z');
    CHECK(r->path > buf && r->path_len > 0 && r->path[0] == '/');
    CHECK(r->path + r->path_len <= buf + r->head_len);
    CHECK(memchr(buf, '\0', r->head_len) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of exactly size bytes: ASan sees any read past the end
     * (the fuzzer's own buffer may have slack). */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    dd_metrics_request r;
    memset(&r, 0xa5, sizeof(r));
    dd_metrics_parse v = dd_metrics_parse_request(size ? buf : NULL, size, &r);
    CHECK(v == DD_METRICS_PARSE_BAD || v == DD_METRICS_PARSE_NEED_MORE ||
          v == DD_METRICS_PARSE_COMPLETE);
    if (v == DD_METRICS_PARSE_COMPLETE) {
        check_complete(buf, size, &r);
        /* Bytes after the head do not matter; one byte less than the head
         * is not a verdict yet. */
        dd_metrics_request r2;
        CHECK(dd_metrics_parse_request(buf, r.head_len, &r2) == DD_METRICS_PARSE_COMPLETE);
        CHECK(r2.head_len == r.head_len && r2.path_len == r.path_len);
        CHECK(dd_metrics_parse_request(buf, r.head_len - 1, &r2) == DD_METRICS_PARSE_NEED_MORE);
    } else if (v == DD_METRICS_PARSE_NEED_MORE && size > 0) {
        /* No prefix of something that still may become valid is BAD. */
        dd_metrics_request r2;
        CHECK(dd_metrics_parse_request(buf, size - 1, &r2) == DD_METRICS_PARSE_NEED_MORE);
    }
    free(buf);
    return 0;
}
