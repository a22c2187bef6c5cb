/* http_parse.h - the request head parser of the /metrics endpoint (http.c).
 *
 * Bytes in, verdict out: no I/O, no allocation, no global state, so that
 * tests/fuzz/fuzz_metrics_request.c can feed it anything. The bytes come from
 * the network and may hold a NUL anywhere, so they are parsed by length and
 * never treated as a C string; method and path are returned as (pointer,
 * length) slices of the caller's buffer.
 *
 * Grammar accepted (a strict subset of RFC 9112, enough for Prometheus,
 * curl and health probes):
 *
 *   request-line CRLF *( header-line CRLF ) CRLF
 *   request-line = METHOD SP TARGET SP ( "HTTP/1.1" / "HTTP/1.0" )
 *   METHOD       = 1*( "A"-"Z" )
 *   TARGET       = "/" *( any byte above SP but DEL )   ; query/fragment cut off
 *
 * A NUL or a bare CR/LF anywhere in the head makes it bad: no valid request
 * has one, and a head we would read differently from a proxy is a request
 * smuggling seed. Headers are otherwise not interpreted (the endpoint needs
 * none). */
#ifndef DD_METRICS_HTTP_PARSE_H
#define DD_METRICS_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum dd_metrics_parse {
    DD_METRICS_PARSE_BAD = -1,      /* malformed: answer 400 and close */
    DD_METRICS_PARSE_NEED_MORE = 0, /* no verdict yet: read more bytes */
    DD_METRICS_PARSE_COMPLETE = 1,  /* a whole, valid head: *req is filled */
} dd_metrics_parse;

/* Slices of the buffer given to dd_metrics_parse_request(): valid as long as
 * that buffer is, and not NUL-terminated. */
typedef struct dd_metrics_request {
    const char *method;
    size_t method_len;
    const char *path; /* the target up to '?' or '#' */
    size_t path_len;
    size_t head_len; /* bytes of the head, the final CRLF CRLF included */
} dd_metrics_request;

/* Looks at buf[0..len) (the bytes received so far; buf may be NULL when len
 * is 0). Returns NEED_MORE, COMPLETE (then *req is set) or BAD, as early as
 * the bytes allow: a malformed request line is BAD as soon as it is
 * complete, and a NUL is BAD as soon as it arrives. Bytes after the head are
 * ignored. The caller bounds len (too long a head is its 431). */
dd_metrics_parse dd_metrics_parse_request(const char *buf, size_t len, dd_metrics_request *req);

/* true when the slice s[0..n) equals the C string lit. */
bool dd_metrics_slice_eq(const char *s, size_t n, const char *lit);

#endif
