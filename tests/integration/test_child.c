/* dd_child: a command and its grandchildren are stopped as one group, the
 * extra environment reaches it, and the loop closes clean. The guard is a
 * real dispatchd (`__guard`): its exit status is asserted, and a sanitizer
 * report from it fails the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "child/child.h"
#include "proc/proc.h" /* dd_proc_read */
#include "../support/testsupport.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
    int exits;
    int64_t status;
    int sig;
} exit_rec;

static void on_exit_cb(dd_child *c, int64_t status, int sig, void *arg)
{
    exit_rec *r = arg;
    r->exits++;
    r->status = status;
    r->sig = sig;
}

/* Gone or a zombie waiting for init to reap it. */
static bool proc_gone(pid_t pid)
{
    dd_proc_info info;
    return dd_proc_read(pid, &info) < 0 || info.state == 'Z' || info.state == 'X';
}

static dd_child *new_child(uv_loop_t *loop, dd_log *log, dd_child_exit_cb cb, void *arg)
{
    dd_child *c = NULL;
    char err[256];
    assert_int_equal(dd_child_new(loop, log, "t", cb, arg, &c, err, sizeof(err)), 0);
    assert_non_null(c);
    return c;
}

/* dd_child_new refuses a child without a name and leaves nothing behind:
 * the loop closes clean. */
static void test_new_needs_name(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    dd_child *c = (dd_child *)&loop; /* must be reset */
    char err[256] = "";
    assert_int_equal(dd_child_new(&loop, log, "", NULL, NULL, &c, err, sizeof(err)), DD_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err, "needs a name"));
    assert_int_equal(uv_loop_close(&loop), 0);
    dd_log_free(log);
}

static void on_timer_stop(uv_timer_t *t)
{
    dd_child_stop(t->data, 2000);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_group_stop_and_env(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    exit_rec rec = {0};
    dd_child *c = new_child(&loop, log, on_exit_cb, &rec);
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/child-XXXXXX", dd_test_tmpdir());
    assert_non_null(mkdtemp(dir));
    char script[1400];
    snprintf(script, sizeof(script),
             "echo \"$DD_TEST_VAR\" > %s/env; sleep 100 & echo $! > %s/gc; wait", dir, dir);
    char *argv[] = {(char *)"/bin/sh", (char *)"-c", script, NULL};
    const char *env[] = {"DD_TEST_VAR=hello", NULL};
    char err[256];
    assert_int_equal(dd_child_start(c, argv, env, err, sizeof(err)), 0);
    pid_t leader = dd_child_pid(c);
    assert_true(leader > 0);
    /* wait for the grandchild pid file */
    char path[700];
    snprintf(path, sizeof(path), "%s/gc", dir);
    pid_t gc = 0;
    for (int i = 0; i < 200 && gc == 0; i++) {
        FILE *f = fopen(path, "r");
        if (f) {
            int v = 0;
            if (fscanf(f, "%d", &v) == 1)
                gc = v;
            fclose(f);
        }
        if (!gc)
            usleep(10000);
    }
    assert_true(gc > 0);
    assert_int_equal(kill(gc, 0), 0);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = c;
    uv_timer_start(&t, on_timer_stop, 10, 0);
    while (rec.exits == 0)
        uv_run(&loop, UV_RUN_ONCE);
    assert_false(dd_child_running(c));
    /* the grandchild died with the group */
    for (int i = 0; i < 100 && !proc_gone(gc); i++)
        usleep(10000);
    assert_true(proc_gone(gc));
    snprintf(path, sizeof(path), "%s/env", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[64] = {0};
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    assert_string_equal(line, "hello\n");
    dd_child_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    dd_log_free(log);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_close_while_running_kills(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    exit_rec rec = {0};
    dd_child *c = new_child(&loop, log, on_exit_cb, &rec);
    char *argv[] = {(char *)"/bin/sleep", (char *)"100", NULL};
    char err[256];
    assert_int_equal(dd_child_start(c, argv, NULL, err, sizeof(err)), 0);
    pid_t pid = dd_child_pid(c);
    dd_child_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_true(proc_gone(pid));
    assert_int_equal(rec.exits, 0); /* no callback after close */
    dd_log_free(log);
}

static void test_bad_command(void **state)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    dd_child *c = new_child(&loop, log, NULL, NULL);
    char *argv[] = {(char *)"/nonexistent/cmd", NULL};
    char err[256];
    assert_true(dd_child_start(c, argv, NULL, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "cannot start '/nonexistent/cmd'"));
    dd_child_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    dd_log_free(log);
}

typedef struct {
    dd_child *c;
    int kicks;
    int64_t window_ms;
} kicker;

/* Each "landed heartbeat" moves the deadline to now + window. */
static void on_kick(uv_timer_t *t)
{
    kicker *k = t->data;
    if (k->kicks-- > 0)
        dd_child_set_deadline(k->c, dd_boot_ms() + k->window_ms);
    else
        uv_timer_stop(t);
}

/* The guard stops a command whose deadline is not moved on in time (TERM
 * lead before it, KILL at it), and leaves it alone while later deadlines
 * come. */
static void test_guard_deadline(void **state)
{
    const char *exe = getenv("DISPATCHD");
    if (!exe)
        skip();
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    exit_rec rec = {0};
    dd_child *c = new_child(&loop, log, on_exit_cb, &rec);
    dd_child_set_guard(c, exe, 5000, true, 100);
    char *argv[] = {(char *)"/bin/sh", (char *)"-c",
                    (char *)"trap 'exit 0' TERM; while :; do sleep 0.02; done", NULL};
    char err[256];

    /* no deadline yet: refused */
    assert_int_equal(dd_child_start(c, argv, NULL, err, sizeof(err)), DD_EFENCED);
    assert_non_null(strstr(err, "deadline"));

    /* deadline moved every 100 ms for 1.2 s: still running */
    dd_child_set_deadline(c, dd_boot_ms() + 400);
    assert_int_equal(dd_child_start(c, argv, NULL, err, sizeof(err)), 0);
    kicker k = {c, 12, 400};
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &k;
    uv_timer_start(&t, on_kick, 100, 100);
    uint64_t t0 = uv_now(&loop);
    while (uv_now(&loop) - t0 < 1200 && rec.exits == 0)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rec.exits, 0);
    assert_true(dd_child_running(c));

    /* the deadline stops moving: the command is gone by the deadline (its
     * guard TERMs it 100 ms before; the 5 s grace does not apply) */
    while (rec.exits == 0 && uv_now(&loop) - t0 < 6000)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rec.exits, 1);
    int64_t late = dd_boot_ms() - dd_child_deadline(c);
    assert_true(late < 300); /* exit event seen promptly after the deadline */
    /* the guard stopped the command and reports the command's own status:
     * it exits 0 on TERM here (an ASan or UBSan error would make it 1 or an
     * abort) */
    assert_int_equal(rec.sig, 0);
    assert_int_equal(rec.status, 0);
    assert_int_equal(dd_test_sanitizer_reports(), 0);

    /* a restart inherits the passed deadline: refused, never a new window */
    assert_int_equal(dd_child_start(c, argv, NULL, err, sizeof(err)), DD_EFENCED);
    uv_close((uv_handle_t *)&t, NULL);
    dd_child_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    dd_log_free(log);
}

/* A guard whose dispatchd is frozen hears nothing: the KILL comes at the
 * deadline even when the command ignores TERM and the grace is long. */
static void test_guard_deadline_kills_ignorer(void **state)
{
    const char *exe = getenv("DISPATCHD");
    if (!exe)
        skip();
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    exit_rec rec = {0};
    dd_child *c = new_child(&loop, log, on_exit_cb, &rec);
    dd_child_set_guard(c, exe, 10000, true, 200);
    char *argv[] = {(char *)"/bin/sh", (char *)"-c",
                    (char *)"trap '' TERM; while :; do sleep 0.02; done", NULL};
    char err[256];
    int64_t deadline = dd_boot_ms() + 600;
    dd_child_set_deadline(c, deadline);
    assert_int_equal(dd_child_start(c, argv, NULL, err, sizeof(err)), 0);
    pid_t pid = dd_child_pid(c);
    uint64_t t0 = uv_now(&loop);
    while (rec.exits == 0 && uv_now(&loop) - t0 < 5000)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rec.exits, 1);
    assert_true(dd_boot_ms() - deadline < 300);
    assert_true(proc_gone(pid));
    dd_child_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    dd_log_free(log);
}

/* The pid in file dir/name once a command wrote it (0 after 5 s). */
static pid_t read_pid_file(const char *dir, const char *name)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "r");
        int v = 0;
        if (f) {
            int ok = fscanf(f, "%d", &v);
            fclose(f);
            if (ok == 1 && v > 0)
                return v;
        }
        usleep(10000);
    }
    return 0;
}

/* Zombie children of pid (its task's children file); *has true when want
 * is one of its children. */
static int zombie_children(pid_t pid, pid_t want, bool *has)
{
    char path[64], buf[8192];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    int z = 0;
    *has = false;
    for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n")) {
        dd_proc_info info;
        pid_t p = (pid_t)atoi(tok);
        if (dd_proc_read(p, &info) == 0 && info.state == 'Z')
            z++;
        if (p == want)
            *has = true;
    }
    return z;
}

/* The guard adopts what its command leaves behind (a child subreaper): a
 * helper orphaned while the command runs is TERMed with the group at the
 * stop, one that left the group (setsid) is KILLed after the command, orphans
 * that exit are reaped (no zombie piles up under a command that
 * double-forks), and a helper left when the command exits by itself is
 * KILLed with it. */
static void test_guard_orphans(void **state)
{
    const char *exe = getenv("DISPATCHD");
    if (!exe)
        skip();
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_log *log = dd_log_new(stderr, DD_LOG_WARN);
    exit_rec rec = {0};
    dd_child *c = new_child(&loop, log, on_exit_cb, &rec);
    dd_child_set_guard(c, exe, 5000, false, 0);
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/orphans-XXXXXX", dd_test_tmpdir());
    assert_non_null(mkdtemp(dir));
    char script[2000];
    /* an orphan that lives on, one that left the group (setsid), 20 that
     * exit at once, then wait to be stopped */
    snprintf(script, sizeof(script),
             "(sleep 100 & echo $! > %s/orphan); setsid sleep 100 & echo $! > %s/escaped; i=0; "
             "while [ $i -lt 20 ]; do (sh -c 'exit 0' &); i=$((i+1)); done; echo $$ > %s/ready; "
             "while :; do sleep 0.05; done",
             dir, dir, dir);
    char *argv[] = {(char *)"/bin/sh", (char *)"-c", script, NULL};
    char err[256];
    assert_int_equal(dd_child_start(c, argv, NULL, err, sizeof(err)), 0);
    pid_t guard = dd_child_pid(c);
    pid_t orphan = read_pid_file(dir, "orphan");
    assert_true(orphan > 0);
    pid_t escaped = read_pid_file(dir, "escaped");
    assert_true(escaped > 0);
    assert_true(read_pid_file(dir, "ready") > 0);
    /* the 20 exited orphans were reaped: no zombie children (bounded wait) */
    int z = -1;
    bool adopted = false;
    for (int i = 0; i < 500 && ((z = zombie_children(guard, orphan, &adopted)) != 0 || !adopted);
         i++)
        usleep(10000);
    assert_int_equal(z, 0);
    assert_true(adopted);
    dd_child_stop(c, 5000);
    uint64_t t0 = uv_now(&loop);
    while (rec.exits == 0 && uv_now(&loop) - t0 < 10000)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rec.exits, 1);
    for (int i = 0; i < 300 && !proc_gone(orphan); i++)
        usleep(10000);
    assert_true(proc_gone(orphan)); /* TERMed with the group */
    for (int i = 0; i < 300 && !proc_gone(escaped); i++)
        usleep(10000);
    assert_true(proc_gone(escaped)); /* out of the group, still killed (the guard's child by then) */

    /* the command exits by itself and leaves a helper: KILLed with it */
    snprintf(script, sizeof(script), "(trap '' TERM; sleep 100 & echo $! > %s/left); exit 3",
             dir);
    rec = (exit_rec){0};
    assert_int_equal(dd_child_start(c, argv, NULL, err, sizeof(err)), 0);
    pid_t left = read_pid_file(dir, "left");
    assert_true(left > 0);
    t0 = uv_now(&loop);
    while (rec.exits == 0 && uv_now(&loop) - t0 < 10000)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(rec.exits, 1);
    assert_int_equal(rec.status, 3); /* the command's own status */
    for (int i = 0; i < 300 && !proc_gone(left); i++)
        usleep(10000);
    assert_true(proc_gone(left));
    assert_int_equal(dd_test_sanitizer_reports(), 0);
    dd_child_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    dd_log_free(log);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    /* as dispatchd's main does (child.h): a deadline written to the pipe of
     * a guard that just exited must fail with EPIPE, not kill the test (it
     * did once under load) */
    signal(SIGPIPE, SIG_IGN);
    dd_test_sanitize_children();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_needs_name),
        cmocka_unit_test(test_group_stop_and_env),
        cmocka_unit_test(test_close_while_running_kills),
        cmocka_unit_test(test_bad_command),
        cmocka_unit_test(test_guard_deadline),
        cmocka_unit_test(test_guard_deadline_kills_ignorer),
        cmocka_unit_test(test_guard_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
