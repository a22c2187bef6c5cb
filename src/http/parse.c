/* parse.c - the HTTP/1.1 response parser (see parse.h for what it accepts).
 *
 * Shape: a state machine over the byte stream. Line-shaped parts (status
 * line, field lines, chunk-size lines, trailers) are collected into one
 * line buffer up to their LF and judged whole, so a split anywhere - even
 * between CR and LF - parses the same as one read. Counted parts (a
 * Content-Length body, chunk data) are copied in bulk. Every byte counts
 * against a limit before it is buffered: max_head for status lines and
 * header fields, DD_HTTP_LINE_MAX for a chunk-size line, max_head for the
 * trailers, max_body for the body.
 *
 * A field line is held until the next line shows whether it continues
 * (obs-fold), then interpreted; only Content-Length, Transfer-Encoding and
 * Connection are, and only their syntax and the framing they imply. */
#include "http/parse.h"

#include "core/error.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum state {
    S_STATUS,     /* status line */
    S_FIELDS,     /* header field lines, up to the blank line */
    S_BODY_LEN,   /* Content-Length body */
    S_CHUNK_SIZE, /* chunk-size [chunk-ext] CRLF */
    S_CHUNK_DATA,
    S_CHUNK_CRLF, /* the CRLF after chunk data */
    S_TRAILERS,   /* trailer fields, up to the blank line */
    S_BODY_EOF,   /* body until the peer closes */
    S_DONE,
    S_FAILED,
} state;

struct dd_http_parser {
    size_t max_head, max_body;
    bool head_only;
    state st;
    dd_buf msg;   /* why it failed */
    dd_buf line;  /* the line being collected, LF included once complete */
    dd_buf field; /* the last field line (CRLF stripped, obs-folds joined) */
    size_t head_bytes, trailer_bytes;
    int status, minor;
    /* framing of the current (1xx or final) response */
    bool has_len, te_seen, chunked, conn_close, conn_keep_alive;
    uint64_t len;
    uint64_t remaining; /* of the Content-Length body or the current chunk */
    int crlf;           /* S_CHUNK_CRLF: bytes of the CRLF seen */
    bool keep_alive;
    dd_buf body;
};

static int dd_hp_fail(dd_http_parser *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int dd_hp_fail(dd_http_parser *p, const char *fmt, ...)
{
    va_list ap;
    dd_buf_reset(&p->msg);
    va_start(ap, fmt);
    dd_buf_vprintf(&p->msg, fmt, ap);
    va_end(ap);
    p->st = S_FAILED;
    return DD_EPROTO;
}

/* Up to 40 bytes of s for a message, non-printable bytes as '.'. */
static const char *dd_hp_shown(char out[48], const char *s, size_t n)
{
    size_t k = n < 40 ? n : 40;
    for (size_t i = 0; i < k; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '.';
    memcpy(out + k, n > 40 ? "..." : "", n > 40 ? 4 : 1);
    return out;
}

/* ---------------------------------------------------------- char classes */

/* tchar (RFC 9110 5.6.2) */
static bool dd_hp_is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool dd_hp_is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!dd_hp_is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* field-vchar / SP / HTAB: VCHAR, obs-text (0x80-0xff), SP, HTAB */
static bool dd_hp_is_field_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool dd_hp_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int dd_hp_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Trims OWS from both ends of [*s, *s + *n). */
static void dd_hp_trim(const char **s, size_t *n)
{
    while (*n > 0 && dd_hp_is_ows(**s))
        (*s)++, (*n)--;
    while (*n > 0 && dd_hp_is_ows((*s)[*n - 1]))
        (*n)--;
}

/* The next element of a comma list, OWS-trimmed (may be empty): *s walks
 * the list and becomes NULL after its last element; false once it is. */
static bool dd_hp_next_elem(const char **s, const char *end, const char **e, size_t *en)
{
    if (!*s)
        return false;
    const char *comma = memchr(*s, ',', (size_t)(end - *s));
    const char *stop = comma ? comma : end;
    *e = *s;
    *en = (size_t)(stop - *s);
    dd_hp_trim(e, en);
    *s = comma ? comma + 1 : NULL;
    return true;
}

/* ------------------------------------------------------------ lifecycle */

dd_http_parser *dd_http_parser_new(const dd_http_parser_opts *o)
{
    dd_http_parser *p = dd_xcalloc(1, sizeof(*p));
    p->max_head = o && o->max_head ? o->max_head : DD_HTTP_HEAD_MAX;
    p->max_body = o && o->max_body ? o->max_body : DD_HTTP_BODY_MAX;
    dd_http_parser_reset(p, false);
    return p;
}

void dd_http_parser_free(dd_http_parser *p)
{
    if (!p)
        return;
    dd_buf_release(&p->msg);
    dd_buf_release(&p->line);
    dd_buf_release(&p->field);
    dd_buf_release(&p->body);
    free(p);
}

static void dd_hp_response_reset(dd_http_parser *p)
{
    p->has_len = p->te_seen = p->chunked = false;
    p->conn_close = p->conn_keep_alive = false;
    p->len = 0;
}

void dd_http_parser_reset(dd_http_parser *p, bool head_only)
{
    p->head_only = head_only;
    p->st = S_STATUS;
    dd_buf_reset(&p->msg);
    dd_buf_reset(&p->line);
    dd_buf_reset(&p->field);
    dd_buf_reset(&p->body);
    p->head_bytes = p->trailer_bytes = 0;
    p->status = p->minor = 0;
    dd_hp_response_reset(p);
    p->remaining = 0;
    p->crlf = 0;
    p->keep_alive = false;
}

int dd_http_parser_status(const dd_http_parser *p)
{
    return p->status;
}

bool dd_http_parser_keep_alive(const dd_http_parser *p)
{
    return p->st == S_DONE && p->keep_alive;
}

const char *dd_http_parser_body(const dd_http_parser *p, size_t *len)
{
    if (len)
        *len = p->body.len;
    return dd_buf_str(&p->body);
}

void dd_http_parser_take_body(dd_http_parser *p, dd_buf *out)
{
    dd_buf_release(out);
    *out = p->body;
    p->body = (dd_buf)DD_BUF_INIT;
}

const char *dd_http_parser_error(const dd_http_parser *p)
{
    return p->st == S_FAILED ? dd_buf_str(&p->msg) : "";
}

/* ---------------------------------------------------------------- lines */

/* Appends bytes of data up to and including the first LF to p->line, as
 * long as *budget allows (over it: fails with what). Returns the bytes
 * used; *complete when the LF came. */
static size_t dd_hp_take_line(dd_http_parser *p, const char *data, size_t n, size_t *budget_used,
                              size_t budget, const char *what, bool *complete, int *rc)
{
    const char *nl = memchr(data, '\n', n);
    size_t use = nl ? (size_t)(nl - data) + 1 : n;
    *complete = nl != NULL;
    *rc = 0;
    if (use > budget - *budget_used) {
        *rc = dd_hp_fail(p, "%s over %zu bytes", what, budget);
        return 0;
    }
    *budget_used += use;
    dd_buf_append(&p->line, data, use);
    return use;
}

/* A complete line must end in CRLF and hold no other CR. Returns its
 * length without the CRLF, or -1 (failed: named by what). */
static long dd_hp_line_body(dd_http_parser *p, const char *what)
{
    size_t n = p->line.len;
    char s[48];
    if (n < 2 || p->line.data[n - 2] != '\r') {
        dd_hp_fail(p, "%s '%s' ends in a bare LF", what, dd_hp_shown(s, p->line.data, n - 1));
        return -1;
    }
    if (memchr(p->line.data, '\r', n - 2)) {
        dd_hp_fail(p, "%s '%s' holds a bare CR", what, dd_hp_shown(s, p->line.data, n - 2));
        return -1;
    }
    return (long)(n - 2);
}

/* ---------------------------------------------------------- status line */

static int dd_hp_status_line(dd_http_parser *p, const char *l, size_t n)
{
    char s[48];
    bool ok = n >= 12 && memcmp(l, "HTTP/1.", 7) == 0 && l[7] >= '0' && l[7] <= '9' &&
              l[8] == ' ' && l[9] >= '1' && l[9] <= '5' && l[10] >= '0' && l[10] <= '9' &&
              l[11] >= '0' && l[11] <= '9' && (n == 12 || l[12] == ' ');
    /* The SP before an empty reason phrase is required by the grammar but
     * commonly left out ("HTTP/1.1 200"): that costs no framing certainty. */
    for (size_t i = 13; ok && i < n; i++)
        ok = dd_hp_is_field_char((unsigned char)l[i]);
    if (!ok)
        return dd_hp_fail(p, "malformed status line '%s'", dd_hp_shown(s, l, n));
    p->minor = l[7] - '0';
    p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (p->status == 101)
        return dd_hp_fail(p, "switched protocols (101) unasked");
    dd_hp_response_reset(p);
    p->st = S_FIELDS;
    return 0;
}

/* While the status line is incomplete: its first bytes must already be
 * "HTTP/1.", so a peer that speaks something else fails at once instead of
 * when max_head is used up or the request times out. */
static int dd_hp_status_prefix(dd_http_parser *p)
{
    static const char want[] = "HTTP/1.";
    size_t k = p->line.len < 7 ? p->line.len : 7;
    char s[48];
    if (memcmp(p->line.data, want, k) != 0) {
        size_t n = 0;
        while (n < p->line.len && p->line.data[n] != '\r' && p->line.data[n] != '\n')
            n++;
        return dd_hp_fail(p, "malformed status line '%s'", dd_hp_shown(s, p->line.data, n));
    }
    return 0;
}

/* --------------------------------------------------------------- fields */

static int dd_hp_content_length(dd_http_parser *p, const char *v, size_t n)
{
    const char *s = v, *end = v + n, *e;
    size_t en;
    char sh[48];
    while (dd_hp_next_elem(&s, end, &e, &en)) {
        uint64_t x = 0;
        if (en == 0)
            return dd_hp_fail(p, "malformed Content-Length '%s'", dd_hp_shown(sh, v, n));
        for (size_t i = 0; i < en; i++) {
            if (e[i] < '0' || e[i] > '9')
                return dd_hp_fail(p, "malformed Content-Length '%s'", dd_hp_shown(sh, v, n));
            uint64_t d = (uint64_t)(e[i] - '0');
            if (x > (UINT64_MAX - d) / 10)
                return dd_hp_fail(p, "Content-Length '%s' out of range", dd_hp_shown(sh, v, n));
            x = x * 10 + d;
        }
        if (p->has_len && x != p->len)
            return dd_hp_fail(p, "conflicting Content-Length values %llu and %llu",
                              (unsigned long long)p->len, (unsigned long long)x);
        p->has_len = true;
        p->len = x;
    }
    return 0;
}

/* Codings apply in order: chunked must come last and once; any other
 * coding is one we cannot decode. Empty list elements are ignored
 * (RFC 9110 5.6.1). */
static int dd_hp_transfer_encoding(dd_http_parser *p, const char *v, size_t n)
{
    const char *s = v, *end = v + n, *e;
    size_t en;
    char sh[48];
    p->te_seen = true;
    while (dd_hp_next_elem(&s, end, &e, &en)) {
        if (en == 0)
            continue;
        if (p->chunked)
            return dd_hp_fail(p, "transfer coding '%s' after chunked", dd_hp_shown(sh, e, en));
        if (en != 7 || strncasecmp(e, "chunked", 7) != 0)
            return dd_hp_fail(p, "unsupported transfer coding '%s'", dd_hp_shown(sh, e, en));
        p->chunked = true;
    }
    return 0;
}

static int dd_hp_connection(dd_http_parser *p, const char *v, size_t n)
{
    const char *s = v, *end = v + n, *e;
    size_t en;
    char sh[48];
    while (dd_hp_next_elem(&s, end, &e, &en)) {
        if (en == 0)
            continue;
        if (!dd_hp_is_token(e, en))
            return dd_hp_fail(p, "malformed Connection '%s'", dd_hp_shown(sh, v, n));
        if (en == 5 && strncasecmp(e, "close", 5) == 0)
            p->conn_close = true;
        else if (en == 10 && strncasecmp(e, "keep-alive", 10) == 0)
            p->conn_keep_alive = true;
    }
    return 0;
}

/* Judges the held field line; interprets it if it is one of ours. */
static int dd_hp_field_done(dd_http_parser *p, bool trailer)
{
    const char *l = p->field.data, *colon;
    size_t n = p->field.len;
    char sh[48];
    if (n == 0)
        return 0;
    colon = memchr(l, ':', n);
    if (!colon || !dd_hp_is_token(l, (size_t)(colon - l)))
        return dd_hp_fail(p, "malformed %s line '%s'", trailer ? "trailer" : "header",
                          dd_hp_shown(sh, l, n));
    size_t kl = (size_t)(colon - l);
    const char *v = colon + 1;
    size_t vl = n - kl - 1;
    for (size_t i = 0; i < vl; i++)
        if (!dd_hp_is_field_char((unsigned char)v[i]))
            return dd_hp_fail(p, "control character in %s '%.*s'", trailer ? "trailer" : "header",
                              (int)(kl < 40 ? kl : 40), l);
    dd_hp_trim(&v, &vl);
    int rc = 0;
    if (trailer) /* trailers may not change the framing: they are not read */
        rc = 0;
    else if (kl == 14 && strncasecmp(l, "content-length", 14) == 0)
        rc = dd_hp_content_length(p, v, vl);
    else if (kl == 17 && strncasecmp(l, "transfer-encoding", 17) == 0)
        rc = dd_hp_transfer_encoding(p, v, vl);
    else if (kl == 10 && strncasecmp(l, "connection", 10) == 0)
        rc = dd_hp_connection(p, v, vl);
    dd_buf_reset(&p->field);
    return rc;
}

/* One complete line of a field section (headers or trailers). A line that
 * starts with SP/HTAB continues the held one (obs-fold, unfolded with SP);
 * any other line first finishes the held one. Returns 1 at the blank line. */
static int dd_hp_field_line(dd_http_parser *p, const char *l, size_t n, bool trailer)
{
    int rc;
    char sh[48];
    if (n > 0 && dd_hp_is_ows(l[0])) {
        if (p->field.len == 0) /* RFC 9112 2.2: whitespace before the first field */
            return dd_hp_fail(p, "%s section starts with whitespace '%s'",
                              trailer ? "trailer" : "header", dd_hp_shown(sh, l, n));
        size_t i = 0;
        while (i < n && dd_hp_is_ows(l[i]))
            i++;
        dd_buf_putc(&p->field, ' ');
        dd_buf_append(&p->field, l + i, n - i);
        return 0;
    }
    if ((rc = dd_hp_field_done(p, trailer)) < 0)
        return rc;
    if (n == 0)
        return 1;
    dd_buf_append(&p->field, l, n);
    return 0;
}

/* The blank line after a status line and its fields. */
static int dd_hp_head_done(dd_http_parser *p)
{
    if (p->status < 200) { /* interim: the real reply follows */
        dd_hp_response_reset(p);
        p->st = S_STATUS;
        return 0;
    }
    if (p->te_seen && p->minor == 0)
        return dd_hp_fail(p, "Transfer-Encoding in an HTTP/1.0 reply");
    if (p->te_seen && p->has_len)
        return dd_hp_fail(p, "both Transfer-Encoding and Content-Length");
    if (p->te_seen && !p->chunked)
        return dd_hp_fail(p, "Transfer-Encoding without chunked");
    p->keep_alive = !p->conn_close && (p->minor > 0 || p->conn_keep_alive);
    if (p->head_only || p->status == 204 || p->status == 304) {
        p->st = S_DONE;
    } else if (p->chunked) {
        p->st = S_CHUNK_SIZE;
    } else if (p->has_len) {
        if (p->len > p->max_body)
            return dd_hp_fail(p, "body too large (%llu bytes, limit %zu)",
                              (unsigned long long)p->len, p->max_body);
        p->remaining = p->len;
        p->st = p->len ? S_BODY_LEN : S_DONE;
    } else {
        p->keep_alive = false; /* only the close ends it */
        p->st = S_BODY_EOF;
    }
    return 0;
}

/* ---------------------------------------------------------------- chunks */

/* chunk-size [ chunk-ext ] with
 * chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) */
static int dd_hp_chunk_size(dd_http_parser *p, const char *l, size_t n)
{
    size_t i = 0;
    uint64_t sz = 0;
    char sh[48];
    for (; i < n && dd_hp_hexval(l[i]) >= 0; i++) {
        if (sz > (UINT64_MAX >> 4))
            return dd_hp_fail(p, "chunk size '%s' out of range", dd_hp_shown(sh, l, n));
        sz = sz << 4 | (uint64_t)dd_hp_hexval(l[i]);
    }
    if (i == 0)
        goto bad;
    while (i < n) {
        while (i < n && dd_hp_is_ows(l[i]))
            i++;
        if (i == n || l[i] != ';')
            goto bad;
        i++;
        while (i < n && dd_hp_is_ows(l[i]))
            i++;
        size_t k = i;
        while (i < n && dd_hp_is_tchar((unsigned char)l[i]))
            i++;
        if (i == k)
            goto bad;
        size_t j = i;
        while (j < n && dd_hp_is_ows(l[j]))
            j++;
        if (j == n || l[j] != '=')
            continue;
        for (i = j + 1; i < n && dd_hp_is_ows(l[i]);)
            i++;
        if (i < n && l[i] == '"') {
            for (i++; i < n && l[i] != '"'; i++) {
                unsigned char c = (unsigned char)l[i];
                if (c == '\\') {
                    if (++i == n || !dd_hp_is_field_char((unsigned char)l[i]))
                        goto bad;
                } else if (!dd_hp_is_field_char(c)) {
                    goto bad;
                }
            }
            if (i == n)
                goto bad;
            i++;
        } else {
            k = i;
            while (i < n && dd_hp_is_tchar((unsigned char)l[i]))
                i++;
            if (i == k)
                goto bad;
        }
    }
    if (sz > p->max_body - p->body.len)
        return dd_hp_fail(p, "body too large (over %zu bytes)", p->max_body);
    p->remaining = sz;
    p->st = sz ? S_CHUNK_DATA : S_TRAILERS;
    return 0;
bad:
    return dd_hp_fail(p, "malformed chunk size '%s'", dd_hp_shown(sh, l, n));
}

/* ----------------------------------------------------------------- feed */

static int dd_hp_body_add(dd_http_parser *p, const char *d, size_t n)
{
    if (n > p->max_body - p->body.len)
        return dd_hp_fail(p, "body too large (over %zu bytes)", p->max_body);
    dd_buf_append(&p->body, d, n);
    return 0;
}

/* Bytes of one line-shaped state: collect, then judge the complete line. */
static size_t dd_hp_feed_line(dd_http_parser *p, const char *d, size_t n, int *rc)
{
    bool complete;
    size_t used;
    long len;
    switch (p->st) {
    case S_STATUS:
    case S_FIELDS:
        used = dd_hp_take_line(p, d, n, &p->head_bytes, p->max_head, "status line and headers",
                               &complete, rc);
        if (*rc == 0 && p->st == S_STATUS)
            *rc = dd_hp_status_prefix(p);
        break;
    case S_CHUNK_SIZE: {
        size_t in_line = p->line.len;
        used = dd_hp_take_line(p, d, n, &in_line, DD_HTTP_LINE_MAX, "chunk size line", &complete,
                               rc);
        break;
    }
    default: /* S_TRAILERS */
        used = dd_hp_take_line(p, d, n, &p->trailer_bytes, p->max_head, "trailers", &complete, rc);
        break;
    }
    if (*rc < 0 || !complete)
        return used;
    const char *what = p->st == S_STATUS ? "status line"
                       : p->st == S_FIELDS ? "header line"
                       : p->st == S_CHUNK_SIZE ? "chunk size line"
                                               : "trailer line";
    if ((len = dd_hp_line_body(p, what)) < 0) {
        *rc = DD_EPROTO;
        return used;
    }
    const char *l = p->line.data;
    switch (p->st) {
    case S_STATUS:
        *rc = dd_hp_status_line(p, l, (size_t)len);
        break;
    case S_FIELDS:
        *rc = dd_hp_field_line(p, l, (size_t)len, false);
        if (*rc == 1)
            *rc = dd_hp_head_done(p);
        break;
    case S_CHUNK_SIZE:
        *rc = dd_hp_chunk_size(p, l, (size_t)len);
        break;
    default:
        *rc = dd_hp_field_line(p, l, (size_t)len, true);
        if (*rc == 1) {
            *rc = 0;
            p->st = S_DONE;
        }
        break;
    }
    dd_buf_reset(&p->line);
    return used;
}

int dd_http_parser_feed(dd_http_parser *p, const char *d, size_t n, size_t *used_out)
{
    size_t off = 0;
    int rc = 0;
    while (off < n && p->st != S_DONE && p->st != S_FAILED) {
        const char *s = d + off;
        size_t left = n - off, used;
        switch (p->st) {
        case S_BODY_LEN:
        case S_CHUNK_DATA:
            used = left < p->remaining ? left : (size_t)p->remaining;
            rc = dd_hp_body_add(p, s, used);
            p->remaining -= used;
            if (rc == 0 && p->remaining == 0)
                p->st = p->st == S_BODY_LEN ? S_DONE : S_CHUNK_CRLF;
            break;
        case S_CHUNK_CRLF:
            used = 1;
            if (s[0] != "\r\n"[p->crlf]) {
                rc = dd_hp_fail(p, "chunk data not followed by CRLF");
            } else if (++p->crlf == 2) {
                p->crlf = 0;
                p->st = S_CHUNK_SIZE;
            }
            break;
        case S_BODY_EOF:
            used = left;
            rc = dd_hp_body_add(p, s, used);
            break;
        default:
            used = dd_hp_feed_line(p, s, left, &rc);
            break;
        }
        off += used;
        if (rc < 0)
            break;
    }
    if (used_out)
        *used_out = p->st == S_FAILED ? 0 : off;
    if (p->st == S_FAILED)
        return DD_EPROTO;
    return p->st == S_DONE ? DD_HTTP_PARSE_DONE : DD_HTTP_PARSE_MORE;
}

int dd_http_parser_eof(dd_http_parser *p)
{
    if (p->st == S_BODY_EOF)
        p->st = S_DONE;
    if (p->st == S_DONE)
        return DD_HTTP_PARSE_DONE;
    if (p->st != S_FAILED)
        dd_hp_fail(p, "connection closed before the reply was complete");
    return DD_EPROTO;
}
