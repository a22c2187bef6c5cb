/* codec.c - the small encodings the HTTP API needs: base64 payloads,
 * RFC 3339 timestamps, URL escaping, request UUIDs, enum names. Pure
 * functions, unit-tested in tests/unit/test_temporal_codec.c. */
#include "temporal/codec.h"

#include "core/buf.h"
#include "core/error.h"

#include <ctype.h>
#include <stdbool.h>
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
