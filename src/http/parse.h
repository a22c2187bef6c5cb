/* parse.h - a strict, incremental HTTP/1.1 response parser: bytes in,
 * status / framing / body out. No sockets, no loop, no allocation per byte.
 *
 * The invariant: the reply's framing (where its body ends) is decided only
 * from headers RFC 9112 lets a client trust, and anything the RFC calls
 * invalid is an error, never a guess. A guessed framing desynchronises a
 * keep-alive connection: the next request would read the rest of this
 * reply as its own (response splitting). So, differently from "be liberal":
 *
 *   - lines end in CRLF; a bare CR or LF, a control character in a field,
 *     a field name that is not a token, or whitespace before the colon or
 *     before the first field is an error;
 *   - the status line is "HTTP/1.<digit> <3 digits>[ <reason>]", status 100-599;
 *   - Content-Length is digits; repeated (as fields or as a list) only
 *     with one value (RFC 9110 8.6), else an error;
 *   - Transfer-Encoding may only be "chunked", once, as the final coding
 *     (we decode no other coding); with Content-Length, or in an HTTP/1.0
 *     reply, it is an error (RFC 9112 6.1, 6.3);
 *   - chunk sizes are hex digits only (no "0x", sign or padding), chunk
 *     extensions follow the grammar, chunk data ends in exactly CRLF;
 *   - status line and header fields (1xx interim replies included) total
 *     at most max_head bytes, trailers as many, however the bytes arrive.
 *
 * obs-fold (a field line continued by a line starting with SP/HTAB) is
 * unfolded with one SP before interpreting, as RFC 9112 5.2 requires of a
 * user agent. 1xx replies other than 101 are skipped; 101 is an error (we
 * never ask to switch protocols). 204, 304 and replies to HEAD have no body.
 * A reply with neither Content-Length nor Transfer-Encoding runs to EOF.
 *
 * Results are read with the accessors below; strings and the body belong
 * to the parser and stay valid until the next reset, feed or free. */
#ifndef DD_HTTP_PARSE_H
#define DD_HTTP_PARSE_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct dd_http_parser dd_http_parser;

#define DD_HTTP_HEAD_MAX (64u << 10)  /* default max_head */
#define DD_HTTP_BODY_MAX (16u << 20)  /* default max_body */
#define DD_HTTP_LINE_MAX 1024u        /* a chunk-size line, extensions included */

enum {
    DD_HTTP_PARSE_MORE = 0, /* every byte used; the reply is not complete yet */
    DD_HTTP_PARSE_DONE = 1, /* the reply is complete */
};

typedef struct dd_http_parser_opts {
    size_t max_head; /* status lines + header fields of one reply; 0: DD_HTTP_HEAD_MAX */
    size_t max_body; /* a larger body is an error; 0: DD_HTTP_BODY_MAX */
} dd_http_parser_opts;

/* A parser for one reply at a time (reset between replies). opts may be
 * NULL (defaults). Never NULL (no handle, and out of memory aborts:
 * CONTRIBUTING.md). Free with dd_http_parser_free. */
dd_http_parser *dd_http_parser_new(const dd_http_parser_opts *opts);
void dd_http_parser_free(dd_http_parser *p);

/* Starts a new reply. head_only: the request was HEAD (no body, whatever
 * the headers say). Keeps the buffers' memory. */
void dd_http_parser_reset(dd_http_parser *p, bool head_only);

/* Feeds the next n bytes of the stream; any split is fine. Returns
 * DD_HTTP_PARSE_MORE (all n used), DD_HTTP_PARSE_DONE (*used bytes of data
 * completed the reply; the rest is not part of it), or DD_EPROTO (invalid
 * or too large; dd_http_parser_error says why). Once done or failed it
 * returns the same again and uses nothing. used may be NULL. */
int dd_http_parser_feed(dd_http_parser *p, const char *data, size_t n, size_t *used);

/* The stream ended. DD_HTTP_PARSE_DONE when that completes the reply (a
 * body that runs to EOF; or it was already complete), else DD_EPROTO (a
 * truncated reply). A TLS caller must only report a close_notify here: a
 * bare TCP close can be a truncation attack. */
int dd_http_parser_eof(dd_http_parser *p);

/* The last status line's code (an interim 1xx until the final one
 * arrives); 0 before any status line. */
int dd_http_parser_status(const dd_http_parser *p);

/* After DD_HTTP_PARSE_DONE: whether the headers allow another request on
 * the connection (HTTP/1.1 without "Connection: close", HTTP/1.0 with
 * "keep-alive", and not a body read to EOF). */
bool dd_http_parser_keep_alive(const dd_http_parser *p);

/* The body so far (NUL-terminated, "" when empty, never NULL). */
const char *dd_http_parser_body(const dd_http_parser *p, size_t *len);

/* Moves the body into *out (which the caller releases) and empties the
 * parser's; *out's previous contents are released. */
void dd_http_parser_take_body(dd_http_parser *p, dd_buf *out);

/* Why the reply was refused ("" unless DD_EPROTO was returned): one
 * lowercase phrase, e.g. "malformed chunk size '0x2'". */
const char *dd_http_parser_error(const dd_http_parser *p);

#endif
