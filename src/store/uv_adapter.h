/* uv_adapter.h - hiredis' async API on a libuv loop.
 *
 * Why not <hiredis/adapters/libuv.h> (0.14): when the socket reports an
 * error (POLLERR: a refused connect, a reset), libuv stops the poll handle
 * and calls back with a negative status, which that adapter ignores. The
 * connection then hangs until our connect deadline, and a refused connect is
 * reported as a timeout. Here an error status is handed to hiredis as
 * "readable", so hiredis itself finds the cause (SO_ERROR, read()) and
 * reports it: "Connection refused", at once. */
#ifndef DD_STORE_UV_ADAPTER_H
#define DD_STORE_UV_ADAPTER_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop. Returns REDIS_OK, or REDIS_ERR (ac is unchanged:
 * free it with redisAsyncFree). */
int dd_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
