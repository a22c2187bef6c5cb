/* will_proc.h - one will process per host: the wills of every guard, run
 * on one Redis connection once dispatchd has died.
 *
 * Why: a guard that ran its own will (will.h) connected to Redis by itself.
 * That is cheap for one dispatcher and a herd for a thousand: when dispatchd
 * died, 1,000 guards woke at once, each opened a connection and ran one
 * script, on a host that was also starting its standbys' children; Redis
 * connections timed out and wills failed (docs/scale.md). So dispatchd keeps
 * one small process beside it, `dispatchd __will`, that does nothing while
 * dispatchd lives. A guard whose dispatchd died still stops its command
 * first and still decides alone whether a will is due (only after a death,
 * never after a TERM or the acting deadline); it then hands the will it
 * holds to the will process over a pipe (one frame, written whole: at most
 * PIPE_BUF bytes, so frames from many guards never interleave) instead of
 * connecting itself. The will process runs every will it is handed on one
 * connection per Redis (the scripts pipelined), each as fenced as before
 * (dd_store_let_go), and logs each result as the guard did (event=will_*).
 *
 * Who owns what: dispatchd owns its dd_will_proc (started before the first
 * child, restarted after a back-off if it dies, told "bye" and waited for at
 * a clean exit). The process learns that dispatchd died from the end of its
 * control pipe without the "bye" byte (kill -9, OOM, a crash: the kernel
 * closes dispatchd's end), never from a signal, so a frozen dispatchd
 * triggers nothing here either. It holds a will only as long as it runs it
 * (the Redis password in it is wiped after). It exits once dispatchd is gone,
 * every guard has closed its end of the pipe and every will has been
 * answered; at most cap_ms after dispatchd's death it stops waiting for
 * guards. A guard that cannot hand its will over (no will process at
 * dispatchd's death: EPIPE; the pipe full for 3 s; a will too large for one
 * frame) runs it itself as before. */
#ifndef DD_CHILD_WILL_PROC_H
#define DD_CHILD_WILL_PROC_H

#include <stddef.h>
#include <stdint.h>

struct uv_loop_s;
struct dd_log;

typedef struct dd_will_proc dd_will_proc;

/* Starts `exe __will CAP_MS` on loop (log borrowed; server_id names it in
 * its log lines). 0 and *out, or a negative error with a message in err. */
int dd_will_proc_start(struct uv_loop_s *loop, struct dd_log *log, const char *exe,
                       const char *server_id, int64_t cap_ms, dd_will_proc **out, char *err,
                       size_t errlen);
/* The end of the pipe a guard gets (as its fd 5) to hand its will over
 * (the same pipe across restarts of the will process), or -1 after close. */
int dd_will_proc_fd(const dd_will_proc *p);
/* A clean exit: tells the process "bye" (no will is due), waits for it
 * (KILL after 5 s), frees p, then done(arg). Call after every child has
 * stopped. */
void dd_will_proc_close(dd_will_proc *p, void (*done)(void *arg), void *arg);

/* The guard's side: writes the packed will (len bytes) to fd as one frame,
 * waiting at most timeout_ms for room. 0, or a negative errno (DD_EINVAL
 * when it does not fit one frame). */
int dd_will_hand_over(int fd, const void *will, size_t len, int timeout_ms);

/* The body of the hidden `__will` command. */
int dd_will_main(int argc, char **argv);

#endif
