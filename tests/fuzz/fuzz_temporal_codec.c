/* fuzz_temporal_codec - src/temporal/codec.c: the encodings of the Temporal
 * HTTP API that read what the server sends (base64 payloads, RFC 3339
 * times) or build what goes into a URL (percent-escaping, enum names).
 *   - base64: decode(encode(x)) == x; decoding any text never reads past
 *     it, and decoding the URL-safe alphabet equals the standard one;
 *   - times: any text parses to a value or 0 without UB (UBSan checks the
 *     arithmetic); a time we format parses back to itself;
 *   - URL escaping leaves only unreserved characters and %XX, and
 *     unescaping gives the input back;
 *   - enum names are [A-Z0-9_] with the prefix, or refused.
 *
 * Input: [selector][payload...] (the payload as bytes and as a C string). */
#include "fuzz.h"

#include "core/buf.h"
#include "core/error.h"
#include "temporal/codec.h"

#include <ctype.h>
#include <time.h>

static void base64(const uint8_t *p, size_t n, const char *s)
{
    dd_buf enc = DD_BUF_INIT, dec = DD_BUF_INIT;
    dd_tc_base64_encode(&enc, p, n);
    FUZZ_CHECK(enc.len == (n + 2) / 3 * 4, "encoded %zu bytes to %zu", n, enc.len);
    FUZZ_CHECK(dd_tc_base64_decode(&dec, dd_buf_str(&enc)) == 0, "own encoding refused");
    FUZZ_CHECK(dec.len == n && (n == 0 || memcmp(dec.data, p, n) == 0), "round trip lost bytes");
    /* the URL-safe alphabet decodes the same */
    for (size_t i = 0; i < enc.len; i++)
        enc.data[i] = enc.data[i] == '+' ? '-' : enc.data[i] == '/' ? '_' : enc.data[i];
    dd_buf_reset(&dec);
    FUZZ_CHECK(dd_tc_base64_decode(&dec, dd_buf_str(&enc)) == 0 && dec.len == n &&
                   (n == 0 || memcmp(dec.data, p, n) == 0),
               "URL-safe alphabet decodes differently");
    /* arbitrary text */
    dd_buf_reset(&dec);
    int rc = dd_tc_base64_decode(&dec, s);
    FUZZ_CHECK(rc == 0 || rc == DD_EPROTO, "rc %d", rc);
    FUZZ_CHECK(dec.len <= strlen(s), "decoded more bytes than characters");
    dd_buf_release(&enc);
    dd_buf_release(&dec);
}

static void times(const uint8_t *p, size_t n, const char *s)
{
    (void)dd_tc_parse_time_ns(s);
    /* a time the server could send: formatted from the input's numbers */
    if (n < 8)
        return;
    int64_t sec = 0;
    for (int i = 0; i < 5; i++)
        sec = sec << 8 | p[i];
    sec %= 253402300800LL; /* 0000-01-01 .. 9999-12-31 are 4-digit years */
    uint32_t ns = (uint32_t)(p[5] << 16 | p[6] << 8 | p[7]) % 1000000000u;
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 1970)
        return;
    char text[128]; /* room for any int, so the compiler sees no truncation */
    snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%09uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ns);
    int64_t got = dd_tc_parse_time_ns(text);
    /* representable in int64 ns until 2262-04-11T23:47:16.854775807Z:
     * within that last second, up to its 854775807th ns (INT64_MAX) */
    if (sec < 9223372036LL || (sec == 9223372036LL && ns <= 854775807u))
        FUZZ_CHECK(got == sec * 1000000000LL + ns, "'%s' parsed to %lld", text, (long long)got);
    else
        FUZZ_CHECK(got == 0, "'%s' (past int64 ns) parsed to %lld", text, (long long)got);
}

static int hexval(int c)
{
    return isdigit(c) ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static void url(const char *s)
{
    dd_buf e = DD_BUF_INIT, back = DD_BUF_INIT;
    dd_tc_url_escape(&e, s);
    for (size_t i = 0; i < e.len; i++) {
        unsigned char c = (unsigned char)e.data[i];
        if (c == '%') {
            FUZZ_CHECK(i + 2 < e.len && hexval(e.data[i + 1]) >= 0 && hexval(e.data[i + 2]) >= 0,
                       "bad escape at %zu of '%s'", i, e.data);
            dd_buf_putc(&back, (char)(hexval(e.data[i + 1]) * 16 + hexval(e.data[i + 2])));
            i += 2;
        } else {
            FUZZ_CHECK(isalnum(c) || strchr("-._~", c), "'%c' left unescaped", c);
            dd_buf_putc(&back, (char)c);
        }
    }
    FUZZ_CHECK(strcmp(dd_buf_str(&back), s) == 0, "escaping lost bytes");
    dd_buf_release(&e);
    dd_buf_release(&back);
}

static void enums(const char *s)
{
    dd_buf out = DD_BUF_INIT;
    static const char prefix[] = "WORKFLOW_ID_CONFLICT_POLICY_";
    if (dd_tc_enum_name(&out, prefix, s) == 0) {
        FUZZ_CHECK(strncmp(dd_buf_str(&out), prefix, strlen(prefix)) == 0, "no prefix: '%s'",
                   dd_buf_str(&out));
        for (size_t i = 0; i < out.len; i++)
            FUZZ_CHECK(isupper((unsigned char)out.data[i]) || isdigit((unsigned char)out.data[i]) ||
                           out.data[i] == '_',
                       "'%c' in an enum name", out.data[i]);
    }
    dd_buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    uint8_t sel = fuzz_byte(&in);
    char *s = malloc(in.n + 1);
    memcpy(s, in.p, in.n);
    s[in.n] = '\0';
    switch (sel % 4) {
    case 0: base64(in.p, in.n, s); break;
    case 1: times(in.p, in.n, s); break;
    case 2: url(s); break;
    default: enums(s); break;
    }
    free(s);
    return 0;
}
