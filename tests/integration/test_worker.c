/* The worker API (include/dispatchd.h) against a real redis-server with
 * requirepass: start, heartbeat, stop on the caller's loop. Every test ends
 * with the loop closed clean; the sanitizer build (ASan) sees any use of the
 * worker after its close callbacks freed it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dispatchd.h"
#include "../support/testsupport.h"

#include <hiredis/hiredis.h>
#include <uv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSWORD "worker-test-pw"

/* testsupport keeps a pointer to every server it started: static storage. */
static dd_test_server the_server;

static void on_done(void *arg)
{
    *(bool *)arg = true;
}

/* Score of member in the dispatcher's worker set, via a plain client; -1 if
 * absent. */
static long long registered_at(const char *member)
{
    redisContext *rc = redisConnect("127.0.0.1", the_server.port);
    assert_non_null(rc);
    assert_int_equal(rc->err, 0);
    redisReply *r = redisCommand(rc, "AUTH %s", PASSWORD);
    freeReplyObject(r);
    long long at = -1;
    r = redisCommand(rc, "KEYS *workers*");
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *s = redisCommand(rc, "ZSCORE %s %s", r->element[i]->str, member);
        if (s && s->type == REDIS_REPLY_STRING)
            at = atoll(s->str);
        freeReplyObject(s);
    }
    freeReplyObject(r);
    redisFree(rc);
    return at;
}

static int setup(void **state)
{
    return dd_test_redis_start(&the_server, PASSWORD) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    dd_test_server_stop(&the_server);
    return 0;
}

static dispatchd_worker *start(uv_loop_t *loop, const char *id, const char *url,
                               const char *password)
{
    char err[256] = "";
    dispatchd_worker_opts o = {.redis_url = url,
                               .redis_password = password,
                               .project = "proj",
                               .queue = "queue",
                               .server_id = id,
                               .heartbeat_interval_ms = 100};
    dispatchd_worker *w = NULL;
    if (dispatchd_worker_start(loop, &o, &w, err, sizeof(err)) < 0)
        fail_msg("start: %s", err);
    return w;
}

/* Runs the loop until w has heartbeaten once (bounded: 10 s). */
static void wait_beat(uv_loop_t *loop, dispatchd_worker *w)
{
    for (int i = 0; i < 100 && dispatchd_worker_heartbeats(w) == 0; i++)
        dd_test_sleep_loop(loop, 100);
    assert_true(dispatchd_worker_heartbeats(w) > 0);
}

static void stop_and_close(uv_loop_t *loop, dispatchd_worker *w)
{
    bool done = false;
    dispatchd_worker_stop(w, on_done, &done);
    /* stop closes two handles and frees w in the last close callback; a
     * callback that reads w after the other freed it is a use-after-free. */
    assert_true(dd_test_run_until(loop, &done, 5000));
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_start_beat_stop(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", the_server.port);
    dispatchd_worker *w = start(&loop, "w-clean", url, PASSWORD);
    wait_beat(&loop, w);
    assert_true(registered_at("w-clean") > 0);
    stop_and_close(&loop, w);
    assert_int_equal(registered_at("w-clean"), -1); /* deregistered */
}

/* The password in the URL (redis://:pw@host) works as well as the option. */
static void test_password_in_url(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[96];
    snprintf(url, sizeof(url), "redis://:%s@127.0.0.1:%d/0", PASSWORD, the_server.port);
    dispatchd_worker *w = start(&loop, "w-url", url, NULL);
    wait_beat(&loop, w);
    stop_and_close(&loop, w);
}

/* Stopped before its first heartbeat: the same two closes, the same frees. */
static void test_stop_early(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", the_server.port);
    dispatchd_worker *w = start(&loop, "w-early", url, PASSWORD);
    stop_and_close(&loop, w);
}

/* Stopped while Redis is gone: the deregistration fails as the connection
 * dies, and the worker closes its store from that very callback. */
static void test_stop_with_redis_down(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", the_server.port);
    dispatchd_worker *w = start(&loop, "w-down", url, PASSWORD);
    wait_beat(&loop, w);
    dd_test_server_stop(&the_server);
    stop_and_close(&loop, w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_beat_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_in_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_early, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_redis_down, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
