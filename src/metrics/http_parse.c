/* http_parse.c - see http_parse.h. */
#include "metrics/http_parse.h"

#include <string.h>

bool dd_metrics_slice_eq(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

/* Checks the request line p[0..n) byte by byte, so that a prefix can be
 * judged too (complete = false: more bytes may follow). Fills method and
 * path when the line is complete and valid. */
static dd_metrics_parse dd_parse_request_line(const char *p, size_t n, bool complete,
                                              dd_metrics_request *req)
{
    static const char version[] = "HTTP/1.";
    enum { METHOD, TARGET_START, TARGET, VERSION } st = METHOD;
    size_t method_len = 0, target_at = 0, target_len = 0, version_at = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        switch (st) {
        case METHOD:
            if (c >= 'A' && c <= 'Z')
                method_len++;
            else if (c == ' ' && method_len > 0)
                st = TARGET_START;
            else
                return DD_METRICS_PARSE_BAD;
            break;
        case TARGET_START:
            if (c != '/')
                return DD_METRICS_PARSE_BAD;
            target_at = i;
            target_len = 1;
            st = TARGET;
            break;
        case TARGET:
            if (c == ' ') {
                version_at = i + 1;
                st = VERSION;
            } else if (c <= ' ' || c == 0x7f) {
                return DD_METRICS_PARSE_BAD;
            } else {
                target_len++;
            }
            break;
        case VERSION: {
            size_t k = i - version_at; /* index into "HTTP/1.x" */
            if (k < sizeof(version) - 1 ? c != (unsigned char)version[k]
                                        : (k > 7 || (c != '0' && c != '1')))
                return DD_METRICS_PARSE_BAD;
            break;
        }
        }
    }
    if (!complete)
        return DD_METRICS_PARSE_NEED_MORE;
    if (st != VERSION || n - version_at != 8)
        return DD_METRICS_PARSE_BAD;
    const char *target = p + target_at;
    size_t path_len = 0;
    while (path_len < target_len && target[path_len] != '?' && target[path_len] != '#')
        path_len++;
    req->method = p;
    req->method_len = method_len;
    req->path = target;
    req->path_len = path_len;
    return DD_METRICS_PARSE_COMPLETE;
}

dd_metrics_parse dd_metrics_parse_request(const char *buf, size_t len, dd_metrics_request *req)
{
    dd_metrics_request r = {0};
    size_t pos = 0;
    if (len == 0)
        return DD_METRICS_PARSE_NEED_MORE;
    if (memchr(buf, '\0', len))
        return DD_METRICS_PARSE_BAD;
    /* One line per turn: pos is the start of the current line. */
    for (int line = 0;; line++) {
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - buf) : len; /* the LF, or the end of the bytes */
        /* Every CR must be the one before an LF; a CR as the very last byte
         * received may still get its LF. */
        const char *cr = memchr(buf + pos, '\r', end - pos);
        if (nl && (!cr || cr != nl - 1))
            return DD_METRICS_PARSE_BAD; /* bare LF, or a CR inside the line */
        if (!nl && cr && cr != buf + len - 1)
            return DD_METRICS_PARSE_BAD;
        size_t line_len = (cr ? (size_t)(cr - buf) : end) - pos;
        if (line == 0) {
            dd_metrics_parse v = dd_parse_request_line(buf + pos, line_len, nl != NULL, &r);
            if (v != DD_METRICS_PARSE_COMPLETE)
                return v;
        } else if (nl && line_len == 0) {
            r.head_len = end + 1;
            *req = r;
            return DD_METRICS_PARSE_COMPLETE;
        }
        if (!nl)
            return DD_METRICS_PARSE_NEED_MORE;
        pos = end + 1;
    }
}
