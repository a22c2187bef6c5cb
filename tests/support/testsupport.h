/* testsupport.h - shared helpers for tests: free ports, real servers.
 *
 * Servers started here run in their own process group and are killed with
 * the whole group by dd_test_server_stop(); an atexit hook and a
 * SIGABRT/SIGSEGV/SIGTERM/SIGINT handler stop anything still running and
 * remove the process's scratch dir (dd_test_tmpdir), so a failed assertion
 * leaves neither a server nor a directory behind. */
#ifndef DD_TESTSUPPORT_H
#define DD_TESTSUPPORT_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int dd_test_free_port(void);

/* This test process's scratch dir, $TMPDIR/dd-test-PID.XXXXXX (TMPDIR is set
 * per build by ctest), made on first use and removed with everything in it at
 * exit and on the fatal signals above. Static; aborts if it cannot be made. */
const char *dd_test_tmpdir(void);

/* Sanitizer reports of the processes this test starts from now on (a
 * dispatchd, e.g. the guard): appends log_path=<scratch dir>/sanitizer to
 * ASAN_OPTIONS and UBSAN_OPTIONS, which children inherit (this process read
 * its own options at start-up). */
void dd_test_sanitize_children(void);
/* Prints every report written so far (then forgets it) and returns how many
 * there were; assert it is 0 where a test's children have exited. Reports
 * nobody collected are printed at exit, and make the exit status 1. */
int dd_test_sanitizer_reports(void);

typedef struct dd_test_server {
    pid_t pid; /* also the process group id */
    int port;
    char dir[256]; /* its --dir, inside dd_test_tmpdir() */
} dd_test_server;

/* Starts redis-server on a free loopback port (requirepass if password is
 * not NULL) and waits (up to 15 s) until its port answers; another port when
 * it exits first (the port was taken meanwhile), up to 3 times. Its log is
 * redis.log in s->dir, printed when it fails. Returns 0 or -1. */
int dd_test_redis_start(dd_test_server *s, const char *password);
/* Stops (SIGKILL to the group) and reaps. Safe to call twice. */
void dd_test_server_stop(dd_test_server *s);
/* Restarts a stopped Redis on the same port and directory. */
int dd_test_redis_restart(dd_test_server *s, const char *password);

/* The Temporal HTTP base URL started by the ctest fixture, e.g.
 * "http://127.0.0.1:41234", or NULL when the fixture did not run. Static. */
const char *dd_test_temporal_url(void);
/* gRPC address "127.0.0.1:PORT" of the same fixture server. Static. */
const char *dd_test_temporal_grpc(void);

struct uv_loop_s;
/* Runs loop until *flag is true or ms pass (a timer bounds it); returns *flag. */
bool dd_test_run_until(struct uv_loop_s *loop, bool *flag, int ms);
/* Runs loop for ms. */
void dd_test_sleep_loop(struct uv_loop_s *loop, int ms);

/* Waits until a TCP connect to 127.0.0.1:port succeeds (true) or ms pass. */
bool dd_test_wait_port(int port, int ms);
/* Waits until the server listening on 127.0.0.1:port has accepted every
 * connection the kernel completed for it (its accept queue is empty: a
 * connect() that returned is in that queue until then); false after ms. */
bool dd_test_wait_accepted(int port, int ms);

/* A unique-ish name for workflow ids etc.: prefix-<pid>-<counter>. Static buffer
 * rotated across 8 calls. */
const char *dd_test_unique(const char *prefix);

/* Copies what a test's logger wrote to logf (everything but level=debug) to
 * stderr for the test output, then closes logf. */
void dd_test_echo_log(FILE *logf);

#endif
