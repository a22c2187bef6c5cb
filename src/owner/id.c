/* id.c - dispatcher workflow IDs: escaping, shortening, parsing. */
#include "owner/id.h"

#include "core/buf.h"
#include "core/error.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- SHA-256 (FIPS 180-4), small and self-contained: one hash per ID ---- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void dd_id_sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) +
                      sha_k[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void dd_sha256_hex(const void *data, size_t len, char out[65])
{
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    const unsigned char *p = data;
    size_t n = len;
    for (; n >= 64; n -= 64, p += 64)
        dd_id_sha256_block(h, p);
    unsigned char tail[128] = {0};
    memcpy(tail, p, n);
    tail[n] = 0x80;
    size_t tl = n + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
    dd_id_sha256_block(h, tail);
    if (tl == 128)
        dd_id_sha256_block(h, tail + 64);
    for (int i = 0; i < 8; i++)
        snprintf(out + 8 * i, 9, "%08x", (unsigned)h[i]);
}

/* ---- escaping ---- */

static void dd_id_seterr(char *err, size_t errlen, const char *fmt, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, what);
}

/* Length of the valid UTF-8 sequence at s, or 0 if invalid (overlongs,
 * surrogates and > U+10FFFF included). */
static size_t dd_id_utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (s[0] >= 0xe0 && s[0] <= 0xef) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))
            return 0;
        return 3;
    }
    if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        if ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
            return 0;
        return 4;
    }
    return 0;
}

static int dd_id_escape_component(dd_buf *b, const char *name, const char *s, char *err,
                                  size_t errlen)
{
    if (!s || !*s) {
        dd_id_seterr(err, errlen, "%s name is empty", name);
        return DD_EINVAL;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = dd_id_utf8_len(p);
        if (n == 0) {
            dd_id_seterr(err, errlen, "%s name is not valid UTF-8", name);
            return DD_EINVAL;
        }
        if (*p < 0x20 || *p == 0x7f) {
            dd_id_seterr(err, errlen, "%s name contains a control character", name);
            return DD_EINVAL;
        }
        switch (*p) {
        case '-': dd_buf_puts(b, "%2D"); break;
        case '%': dd_buf_puts(b, "%25"); break;
        case '/': dd_buf_puts(b, "%2F"); break;
        case '~': dd_buf_puts(b, "%7E"); break;
        default: dd_buf_append(b, (const char *)p, n); break;
        }
        p += n;
    }
    return 0;
}

/* Length of the valid prefix id starts with (its '-' included), or 0. */
static size_t dd_id_prefix_len(const char *id)
{
    size_t n = 0;
    while (n < DD_ID_PREFIX_MAX && id[n] &&
           ((id[n] >= 'a' && id[n] <= 'z') || (id[n] >= 'A' && id[n] <= 'Z') ||
            (id[n] >= '0' && id[n] <= '9') || id[n] == '_' || id[n] == '.'))
        n++;
    return n > 0 && n < DD_ID_PREFIX_MAX && id[n] == '-' ? n + 1 : 0;
}

int dd_id_prefix_check(const char *prefix, char *err, size_t errlen)
{
    if (prefix && *prefix && dd_id_prefix_len(prefix) == strlen(prefix))
        return 0;
    dd_id_seterr(err, errlen,
                 "id prefix '%s' is not 1-63 letters, digits, '_' or '.' followed by one '-' "
                 "(like the default 'dispatcher-')",
                 prefix ? prefix : "");
    return DD_EINVAL;
}

int dd_dispatcher_id(const char *project, const char *queue, char *out, size_t outlen,
                     char *err, size_t errlen)
{
    return dd_dispatcher_id_with(NULL, project, queue, out, outlen, err, errlen);
}

int dd_dispatcher_id_with(const char *prefix, const char *project, const char *queue, char *out,
                          size_t outlen, char *err, size_t errlen)
{
    dd_buf b = DD_BUF_INIT;
    int rc;
    if (!prefix || !*prefix)
        prefix = DD_DISPATCHER_ID_PREFIX;
    if ((rc = dd_id_prefix_check(prefix, err, errlen)) < 0)
        return rc;
    dd_buf_puts(&b, prefix);
    if ((rc = dd_id_escape_component(&b, "project", project, err, errlen)) < 0)
        goto out;
    dd_buf_putc(&b, '-');
    if ((rc = dd_id_escape_component(&b, "task queue", queue, err, errlen)) < 0)
        goto out;
    if (b.len > DD_DISPATCHER_ID_MAX) {
        /* prefix + '~' + 16 hex = MAX. Cut the prefix back so it does not end
         * inside a UTF-8 sequence or a %XX escape: it stays readable. */
        char hex[65];
        dd_sha256_hex(b.data, b.len, hex);
        size_t cut = DD_DISPATCHER_ID_MAX - 17;
        while (cut > 0 && ((unsigned char)b.data[cut] & 0xc0) == 0x80)
            cut--;
        if (b.data[cut - 1] == '%')
            cut -= 1;
        else if (cut >= 2 && b.data[cut - 2] == '%')
            cut -= 2;
        b.len = cut;
        b.data[cut] = '\0';
        dd_buf_putc(&b, '~');
        dd_buf_append(&b, hex, 16);
    }
    if (b.len + 1 > outlen) {
        dd_id_seterr(err, errlen, "buffer too small for dispatcher id '%s'", b.data);
        rc = DD_EINVAL;
        goto out;
    }
    memcpy(out, b.data, b.len + 1);
    rc = 0;
out:
    dd_buf_release(&b);
    return rc;
}

static int dd_id_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* lowercase is not canonical: the builder writes uppercase */
}

static int dd_id_unescape(const char *s, size_t n, char *out, size_t outlen, const char *id,
                          char *err, size_t errlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? dd_id_hexval(s[i + 1]) : -1;
            int lo = hi >= 0 ? dd_id_hexval(s[i + 2]) : -1;
            c = (char)(hi * 16 + lo);
            if (lo < 0 || (c != '-' && c != '%' && c != '/' && c != '~')) {
                dd_id_seterr(err, errlen, "bad escape in dispatcher id '%s'", id);
                return DD_EINVAL;
            }
            i += 2;
        } else if (c == '/' || c == '~') {
            dd_id_seterr(err, errlen, "unescaped character in dispatcher id '%s'", id);
            return DD_EINVAL;
        }
        if (o + 1 >= outlen) {
            dd_id_seterr(err, errlen, "buffer too small to parse dispatcher id '%s'", id);
            return DD_EINVAL;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int dd_dispatcher_id_parse(const char *id, char *project, size_t plen, char *queue, size_t qlen,
                           char *err, size_t errlen)
{
    const size_t pl = dd_id_prefix_len(id);
    char prefix[DD_ID_PREFIX_MAX + 1];
    if (pl == 0) {
        dd_id_seterr(err, errlen, "'%s' is not a dispatcher id", id);
        return DD_EINVAL;
    }
    if (strchr(id, '~')) {
        dd_id_seterr(err, errlen, "dispatcher id '%s' is shortened and cannot be parsed", id);
        return -ENOTSUP;
    }
    memcpy(prefix, id, pl);
    prefix[pl] = '\0';
    const char *p = id + pl, *dash = strchr(p, '-');
    if (!dash || strchr(dash + 1, '-') || dash == p || !dash[1]) {
        dd_id_seterr(err, errlen, "dispatcher id '%s' does not have exactly two components", id);
        return DD_EINVAL;
    }
    int rc = dd_id_unescape(p, (size_t)(dash - p), project, plen, id, err, errlen);
    if (rc == 0)
        rc = dd_id_unescape(dash + 1, strlen(dash + 1), queue, qlen, id, err, errlen);
    if (rc == 0) {
        /* Only accept what the builder produces (UTF-8, no controls). */
        char again[DD_DISPATCHER_ID_BUFLEN];
        if (dd_dispatcher_id_with(prefix, project, queue, again, sizeof(again), err, errlen) <
                0 ||
            strcmp(again, id) != 0) {
            dd_id_seterr(err, errlen, "'%s' is not a canonical dispatcher id", id);
            rc = DD_EINVAL;
        }
    }
    return rc;
}

bool dd_dispatcher_id_matches(const char *id, const char *project, const char *queue)
{
    char buf[DD_DISPATCHER_ID_BUFLEN], prefix[DD_ID_PREFIX_MAX + 1];
    size_t pl = id ? dd_id_prefix_len(id) : 0;
    if (pl == 0)
        return false;
    memcpy(prefix, id, pl);
    prefix[pl] = '\0';
    return dd_dispatcher_id_with(prefix, project, queue, buf, sizeof(buf), NULL, 0) == 0 &&
           strcmp(buf, id) == 0;
}
