/* http.h - the /metrics, /healthz and /readyz endpoint, on the caller's loop.
 *
 * A deliberately tiny HTTP/1.1 server: one request per connection, then
 * "Connection: close". It runs on the libuv loop of the context (no thread,
 * no second loop), so rendering the registry needs no locking.
 *
 *   GET|HEAD /metrics  200, Prometheus text format 0.0.4 (dd_metrics_render)
 *   GET|HEAD /healthz  200 "ok" - answered by the loop itself, so a wedged
 *                      loop shows up as a timeout
 *   GET|HEAD /readyz   200 "ok" or 503 "<reason>" from the readiness callback
 *   other paths        404
 *   other methods      405 (with "Allow: GET, HEAD") on the three paths above
 *   malformed request  400; request head above max_header_bytes: 431
 *
 * Everything is bounded: request head size, concurrent connections, a
 * deadline for the request head and one per connection covering read, write
 * and close. At the connection limit a new connection takes the slot of the
 * oldest one still reading its head (slow clients cannot starve /healthz);
 * when there is none it is accepted and closed at once, so the backlog
 * cannot fill up. Query strings are ignored (Prometheus may add some). */
#ifndef DD_METRICS_HTTP_H
#define DD_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct dd_ctx;
struct dd_metrics;

typedef struct dd_metrics_http dd_metrics_http;

/* Readiness: returns true when ready. May write a short reason (one line, no
 * secrets) into reason, which is "" on entry; it becomes the response body.
 * Called on the loop thread for every GET/HEAD /readyz. */
typedef bool (*dd_metrics_http_ready_fn)(void *arg, char *reason, size_t reasonlen);

typedef struct dd_metrics_http_limits {
    size_t max_header_bytes; /* request line + headers; default 8192 */
    int max_conns;           /* concurrent connections; default 64 */
    int timeout_ms;          /* whole-connection deadline; default 5000 */
    int header_timeout_ms;   /* the request head must arrive within; default 3000 */
} dd_metrics_http_limits;

#define DD_METRICS_HTTP_MAX_HEADER 8192
#define DD_METRICS_HTTP_MAX_CONNS 64
#define DD_METRICS_HTTP_TIMEOUT_MS 5000
#define DD_METRICS_HTTP_HEADER_TIMEOUT_MS 3000

/* Parses listen ("127.0.0.1:9464", "[::1]:9464"; IP literals only, port 0
 * picks a free one) and starts listening on ctx->loop. m, ctx->log and the
 * ready callback's arg are borrowed and must outlive the server; ready may be
 * NULL (always ready). ctx->log may be NULL.
 *
 * Returns 0 and *out, or a negative code with a message in err:
 * DD_EINVAL for a malformed listen string, -errno from bind/listen (e.g.
 * -EADDRINUSE: "cannot listen on 127.0.0.1:9464: address already in use").
 * On failure a handle may still be closing: run the loop (uv_run) before
 * uv_loop_close(). */
int dd_metrics_http_new(const struct dd_ctx *ctx, const char *listen, struct dd_metrics *m,
                        dd_metrics_http_ready_fn ready, void *arg, dd_metrics_http **out,
                        char *err, size_t errlen);

/* Checks a listen string the way dd_metrics_http_new parses it, without
 * binding: 0 and *port (0: "pick a free one"), or DD_EINVAL with a message in
 * err. Lets a command refuse a malformed --metrics-listen before it starts
 * anything. */
int dd_metrics_http_check_listen(const char *listen, int *port, char *err, size_t errlen);
/* Whether listen can be bound right now (a socket bound and closed again;
 * port 0 always can): 0, DD_EINVAL for a malformed string, or -errno (e.g.
 * -EADDRINUSE) with the same message dd_metrics_http_new would give. For a
 * command that must refuse before it starts anything else (`up`). */
int dd_metrics_http_listen_free(const char *listen, char *err, size_t errlen);

/* Replaces the limits (0 fields keep their current value). Applies to
 * connections accepted afterwards. */
void dd_metrics_http_set_limits(dd_metrics_http *h, const dd_metrics_http_limits *limits);

/* The port actually bound (useful with port 0). */
int dd_metrics_http_port(const dd_metrics_http *h);

/* Stops listening and closes every connection; once libuv has closed every
 * handle, frees h and calls done(arg) (may be NULL) from the loop, never
 * inside this call; afterwards uv_loop_close() succeeds. Call once. */
void dd_metrics_http_close(dd_metrics_http *h, void (*done)(void *arg), void *arg);

#endif
