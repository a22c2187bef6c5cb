/* codec.h - internal to src/temporal (and its unit tests): encodings of the
 * Temporal HTTP API. Appends go to a dd_buf the caller owns and releases. */
#ifndef DD_TEMPORAL_CODEC_H
#define DD_TEMPORAL_CODEC_H

#include "core/time.h"

#include <stddef.h>
#include <stdint.h>

struct dd_buf;

/* Standard base64 with padding. */
void dd_tc_base64_encode(struct dd_buf *out, const void *data, size_t len);
/* Accepts standard or URL-safe alphabet, padding optional. 0, or DD_EPROTO
 * on a bad character (out may hold a prefix then). */
int dd_tc_base64_decode(struct dd_buf *out, const char *s);
/* RFC 3339 ("2026-11-23T12:33:05.835655703Z", offsets allowed) to Unix ns;
 * 0 when s is NULL, malformed (a field out of range included), or outside
 * what int64 nanoseconds hold (1677-09-21T00:12:44Z .. 2262-04-11T23:47:16Z,
 * so Go's zero time 0001-01-01T00:00:00Z is 0 too). */
int64_t dd_tc_parse_time_ns(const char *s);
/* About how many heap bytes jansson (2.14, 64-bit) takes to parse the JSON
 * text s[0..n): per object, member, array, string (plus its bytes) and
 * scalar, rounded up so that the real figure stays below it. A reply can
 * cost ~100 times its size ("[{},{},...]"), so a parse is refused when this
 * is over budget. Stops counting once past limit (returns a value > limit).
 * Pure: the text is not validated (jansson does that). */
size_t dd_tc_json_cost(const char *s, size_t n, size_t limit);
/* Percent-encodes everything but RFC 3986 unreserved characters: safe for a
 * path segment and a query value alike. */
void dd_tc_url_escape(struct dd_buf *out, const char *s);
/* A random (version 4) UUID, 36 chars + NUL. */
void dd_tc_uuid4(dd_rng *rng, char out[37]);
/* "terminate_existing" -> "<prefix>TERMINATE_EXISTING"; a name that already
 * carries prefix is kept. DD_EINVAL for an empty name or one with other
 * than [A-Za-z0-9_]. */
int dd_tc_enum_name(struct dd_buf *out, const char *prefix, const char *name);

#endif
