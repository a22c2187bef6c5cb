/* ctx.h - the explicit context every call path carries (R11).
 *
 * Built once by the caller (main, a test, an embedding program) and passed
 * down by pointer; library code never reaches for a global. Everything in it
 * is borrowed: the context owns nothing and frees nothing. */
#ifndef DD_CORE_CTX_H
#define DD_CORE_CTX_H

#include <stdbool.h>

struct uv_loop_s;
struct dd_log;
struct dd_metrics;
struct dd_config;

/* Cancellation: set once when shutdown begins; long-running operations check
 * it before starting new work (no restart, no retry, no new takeover). */
typedef struct dd_cancel {
    bool cancelled;
} dd_cancel;

typedef struct dd_ctx {
    struct uv_loop_s *loop;
    struct dd_log *log;
    struct dd_metrics *metrics; /* may be NULL: nothing is recorded */
    const struct dd_config *cfg;
    dd_cancel *cancel;
} dd_ctx;

static inline bool dd_ctx_cancelled(const dd_ctx *ctx)
{
    return ctx->cancel && ctx->cancel->cancelled;
}

#endif
