/* codec.c - the small encodings the HTTP API needs: base64 payloads,
 * RFC 3339 timestamps, URL escaping, request UUIDs, enum names. Pure
 * functions, unit-tested in tests/unit/test_temporal_codec.c. */
#include "temporal/codec.h"

#include "core/buf.h"

#include <ctype.h>
#include <stdio.h>
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

static int b64val(char c)
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
        int d = b64val(*s);
        if (d < 0)
            return -1;
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
        if (sscanf(s + 1, "%2d:%2d", &oh, &om) != 2)
            return 0;
        off = (oh * 60 + om) * 60 * (*s == '-' ? -1 : 1);
    } else if (*s != 'Z' && *s != 'z') {
        return 0;
    }
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                    .tm_hour = h, .tm_min = mi, .tm_sec = sec};
    int64_t t = (int64_t)timegm(&tm) - off;
    /* Unix ns end in 2262 (and start in 1677): a later time from a server
     * is malformed here, not a signed overflow (found by fuzz_temporal_codec) */
    if (t > (INT64_MAX - frac) / 1000000000LL || t < INT64_MIN / 1000000000LL)
        return 0;
    return t * 1000000000LL + frac;
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
        return -1;
    if (strncmp(name, prefix, pl) != 0)
        dd_buf_puts(out, prefix);
    for (const char *p = name; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_')
            return -1;
        dd_buf_putc(out, (char)toupper((unsigned char)*p));
    }
    return 0;
}
