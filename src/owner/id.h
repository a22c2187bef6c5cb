/* id.h - the dispatcher workflow ID (R1): <prefix><project>-<task-queue>,
 * prefix "dispatcher-" unless the fleet sets --id-prefix.
 *
 * The ID depends only on (project, queue); the host identity goes in the
 * workflow memo/input, never here, so any host restarting the dispatcher
 * lands on the same ID and Temporal's conflict policy does the takeover.
 *
 * The mapping is injective. Each component is escaped byte-wise:
 *
 *     '-' -> %2D    '%' -> %25    '/' -> %2F    '~' -> %7E
 *
 * so an escaped component never contains '-', and the ID splits back into
 * (project, queue) at the one '-' after "dispatcher-". The classic trap
 * ("a-b","c") vs ("a","b-c") becomes dispatcher-a%2Db-c vs dispatcher-a-b%2Dc.
 * Names without those four bytes stay readable: ("billing","emails") ->
 * "dispatcher-billing-emails". '/' is escaped because the Temporal HTTP API
 * carries the ID in the URL path and cannot route an ID containing '/'.
 *
 * Components must be non-empty, valid UTF-8, without control characters.
 *
 * A prefix (--id-prefix) is 1-63 of [A-Za-z0-9_.] and then one '-'. It has
 * no other '-', so an unshortened ID has exactly two '-' and splits back into
 * (prefix, project, queue) whatever the prefix: IDs stay injective across
 * prefixes too, and an ID says which prefix built it.
 *
 * IDs longer than DD_DISPATCHER_ID_MAX bytes are shortened deterministically:
 * the first bytes of the full ID (cut on a UTF-8 and %XX boundary), then '~',
 * then the first 16 hex digits of SHA-256(full ID), exactly
 * DD_DISPATCHER_ID_MAX bytes in total. '~' never occurs in an unshortened ID
 * (it is escaped), so a shortened ID can never equal an unshortened one; two
 * shortened IDs collide only if their 64-bit hash prefixes do. Temporal
 * allows 1000 bytes; 200 keeps logs, metrics labels and Redis keys tidy.
 * See docs/ids.md. */
#ifndef DD_OWNER_ID_H
#define DD_OWNER_ID_H

#include <stdbool.h>
#include <stddef.h>

#define DD_DISPATCHER_ID_PREFIX "dispatcher-"
#define DD_DISPATCHER_ID_MAX 200
#define DD_DISPATCHER_ID_BUFLEN (DD_DISPATCHER_ID_MAX + 1)
#define DD_ID_PREFIX_MAX 64 /* bytes, the trailing '-' included */

/* 0 when prefix is a valid --id-prefix; DD_EINVAL with the reason in err. */
int dd_id_prefix_check(const char *prefix, char *err, size_t errlen);

/* dd_dispatcher_id with a prefix (NULL or "": DD_DISPATCHER_ID_PREFIX). */
int dd_dispatcher_id_with(const char *prefix, const char *project, const char *queue, char *out,
                          size_t outlen, char *err, size_t errlen);

/* Writes the ID of (project, queue) into out (outlen >= DD_DISPATCHER_ID_BUFLEN
 * always suffices). Returns 0, or DD_EINVAL with a message in err (may be
 * NULL) for an empty component, a control character, invalid UTF-8 or a too
 * small buffer. */
int dd_dispatcher_id(const char *project, const char *queue, char *out, size_t outlen,
                     char *err, size_t errlen);

/* The inverse for unshortened IDs of any valid prefix: writes the unescaped
 * project and queue.
 * Returns 0; DD_EINVAL for anything dd_dispatcher_id() cannot have produced
 * (including non-canonical escapes); -ENOTSUP for a shortened ID (it no
 * longer holds the names: compare with dd_dispatcher_id_matches instead). */
int dd_dispatcher_id_parse(const char *id, char *project, size_t plen, char *queue, size_t qlen,
                           char *err, size_t errlen);

/* True when id is the (possibly shortened) ID of (project, queue) under the
 * prefix the ID itself starts with (any valid prefix). */
bool dd_dispatcher_id_matches(const char *id, const char *project, const char *queue);

/* Lowercase hex SHA-256 of data (exposed for tests): out holds 65 bytes. */
void dd_sha256_hex(const void *data, size_t len, char out[65]);

#endif
