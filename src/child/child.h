/* child.h - the dispatcher's child command, run only while this host owns
 * the dispatcher (src/owner), and its guard.
 *
 * child.c runs one command as the leader of its own session and stops it as a
 * group (TERM, bounded wait, KILL); guard.c is the hidden `__guard` command
 * between dispatchd and that command, which makes the command die with
 * dispatchd (even on SIGKILL) and enforces the acting deadline
 * (src/owner/fence.h) on its own clock. A module of its own, apart from
 * src/proc (the local stack's supervisor): the owner needs this and nothing
 * of the stack. It uses src/proc's /proc helpers (proc.c) only.
 *
 * Deadlines go to a guard through a pipe: writes assume SIGPIPE is ignored
 * (dispatchd's main does so), so a guard that just exited is an EPIPE. */
#ifndef DD_CHILD_CHILD_H
#define DD_CHILD_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct uv_loop_s;
struct dd_log;

/* One command run as the leader of its own session, stopped as a group
 * (TERM, bounded wait, KILL). Used by the owner loop to run the
 * dispatcher's work only while owning. */
typedef struct dd_child dd_child;
typedef void (*dd_child_exit_cb)(dd_child *c, int64_t status, int term_signal, void *arg);

/* log is borrowed, name copied (it names the child in every log line);
 * exit_cb runs on every exit of the command. 0 and *out, or DD_EINVAL with
 * a message in err for a missing name. */
int dd_child_new(struct uv_loop_s *loop, struct dd_log *log, const char *name,
                 dd_child_exit_cb exit_cb, void *arg, dd_child **out, char *err, size_t errlen);
/* argv is copied. env_extra: NULL-terminated "KEY=VALUE" strings added to the
 * inherited environment (copied). 0, DD_EBUSY if already running, or a uv
 * error with a message in err. */
int dd_child_start(dd_child *c, char *const *argv, const char *const *env_extra, char *err,
                   size_t errlen);
/* TERM to the group now, KILL after grace_ms if it is still there. No-op
 * when not running. The exit callback reports the end. */
void dd_child_stop(dd_child *c, int64_t grace_ms);
bool dd_child_running(const dd_child *c);
pid_t dd_child_pid(const dd_child *c);
/* Kills the group if running (KILL), closes every handle, then frees c and
 * calls done(arg) (which may be NULL). */
void dd_child_close(dd_child *c, void (*done)(void *arg), void *arg);
/* Runs commands through `guard_exe __guard PPID:GRACE[:DEADLINE:LEAD[:WILL]] --
 * CMD...` (see guard.c) so they die with this process even on SIGKILL.
 * guard_exe is copied; NULL runs commands directly.
 * fenced: the command may act only until its acting deadline
 * (dd_child_set_deadline, CLOCK_BOOTTIME ms, src/owner/fence.h): the guard
 * TERMs it term_lead_ms before the deadline and KILLs it at the deadline
 * unless a later deadline arrived in time, a start is refused (DD_EFENCED)
 * once the deadline has passed, and every stop's KILL comes by the deadline
 * at the latest. A new command inherits the current deadline: a restart
 * never extends it. */
void dd_child_set_guard(dd_child *c, const char *guard_exe, int64_t grace_ms, bool fenced,
                        int64_t term_lead_ms);
/* The last will (child/will.h, packed) the guard of the next start gets on
 * fd 4, to run if dispatchd dies while the command runs; copied (and wiped
 * when replaced). NULL: none. Only with a fenced guard. */
void dd_child_set_will(dd_child *c, const void *will, size_t len);
/* The host's will process (will_proc.h, borrowed: it must outlive c): a
 * guard started while it runs hands its will over instead of running it
 * alone. NULL: none. */
struct dd_will_proc;
void dd_child_set_will_proc(dd_child *c, const struct dd_will_proc *p);
/* Moves the acting deadline (passed on to a running command's guard). */
void dd_child_set_deadline(dd_child *c, int64_t deadline_boot_ms);
int64_t dd_child_deadline(const dd_child *c);

/* For the helper processes dispatchd starts (`__guard`, `__will`): a logger
 * on stderr (dispatchd's log stream) in dispatchd's --log-format
 * (DISPATCHD_LOG_FORMAT, which dispatchd sets for its children), with
 * server_id (DISPATCHD_SERVER_ID) and component=COMPONENT; and closing every
 * fd from lo up (what dispatchd's libraries opened without close-on-exec
 * must not stay open in them, nor reach a command they run). */
struct dd_log *dd_child_helper_log(const char *component);
void dd_child_close_from(int lo);

/* The body of the hidden `__guard` command (guard.c). */
int dd_guard_main(int argc, char **argv);

#endif
