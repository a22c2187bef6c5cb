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
/* Accepts standard or URL-safe alphabet, padding optional. 0 or -1 on a bad
 * character (out may hold a prefix then). */
int dd_tc_base64_decode(struct dd_buf *out, const char *s);
/* RFC 3339 ("2026-11-23T12:33:05.835655703Z", offsets allowed) to Unix ns;
 * 0 when s is NULL or malformed, or outside what int64 ns hold (1677-2262). */
int64_t dd_tc_parse_time_ns(const char *s);
/* Percent-encodes everything but RFC 3986 unreserved characters: safe for a
 * path segment and a query value alike. */
void dd_tc_url_escape(struct dd_buf *out, const char *s);
/* A random (version 4) UUID, 36 chars + NUL. */
void dd_tc_uuid4(dd_rng *rng, char out[37]);
/* "terminate_existing" -> "<prefix>TERMINATE_EXISTING"; a name that already
 * carries prefix is kept. -1 for an empty name or one with other than
 * [A-Za-z0-9_]. */
int dd_tc_enum_name(struct dd_buf *out, const char *prefix, const char *name);

#endif
