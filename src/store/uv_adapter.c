/* uv_adapter.c - see uv_adapter.h. One uv_poll_t per connection, freed
 * from its close callback after hiredis calls cleanup. */
#include "store/uv_adapter.h"

#include <stdlib.h>

typedef struct dd_redis_uv {
    redisAsyncContext *ac; /* NULL once hiredis has let go of it */
    uv_poll_t poll;
    int events;
} dd_redis_uv;

static void poll_cb(uv_poll_t *h, int status, int events)
{
    dd_redis_uv *p = h->data;
    if (status < 0) {
        /* libuv stopped the handle; let hiredis read the socket's error */
        if (p->ac)
            redisAsyncHandleRead(p->ac);
        /* nothing was wrong after all (a spurious error): keep watching */
        if (p->ac && p->events)
            uv_poll_start(&p->poll, p->events, poll_cb);
        return;
    }
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void update(dd_redis_uv *p, int add, int del)
{
    p->events = (p->events | add) & ~del;
    if (p->events)
        uv_poll_start(&p->poll, p->events, poll_cb);
    else
        uv_poll_stop(&p->poll);
}

static void add_read(void *d)
{
    update(d, UV_READABLE, 0);
}

static void del_read(void *d)
{
    update(d, 0, UV_READABLE);
}

static void add_write(void *d)
{
    update(d, UV_WRITABLE, 0);
}

static void del_write(void *d)
{
    update(d, 0, UV_WRITABLE);
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

static void cleanup(void *d)
{
    dd_redis_uv *p = d;
    p->ac = NULL; /* hiredis is freeing the context */
    uv_close((uv_handle_t *)&p->poll, closed);
}

int dd_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data)
        return REDIS_ERR;
    dd_redis_uv *p = calloc(1, sizeof(*p));
    if (!p)
        return REDIS_ERR;
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    p->ac = ac;
    p->poll.data = p;
    ac->ev.data = p;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}
