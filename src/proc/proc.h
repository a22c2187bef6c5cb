/* proc.h - the local process supervisor: processes, locks, status files,
 * protocol probes, the two services of the local stack, and the
 * start/stop/status operations on them.
 *
 * How "running" is decided (S2, S5): an flock on <state>/<svc>.lock is the
 * source of truth. The starter takes the lock and the server inherits the
 * locked file descriptor, so the lock lives exactly as long as the server
 * (and anything it forks) does: a crashed supervisor leaves a correctly held
 * lock, a crashed server leaves a free one. A status file (<svc>.status,
 * JSON, written with .new + rename) only says WHO holds it: pid, the pid's
 * kernel start time and boot id (so a recycled pid is never mistaken for our
 * server), ports, the command, and a random token that every process of the
 * service carries in its environment (DISPATCHD_SERVICE_TOKEN), which finds
 * stray grandchildren even if they left the process group. */
#ifndef DD_PROC_PROC_H
#define DD_PROC_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct dd_config;
struct uv_loop_s;

/* ---- processes (proc.c) ---------------------------------------------- */

/* The identity of a process across pid reuse and reboots. */
typedef struct dd_proc_ident {
    pid_t pid;
    unsigned long long start_ticks; /* field 22 of /proc/<pid>/stat */
    char boot_id[40];
} dd_proc_ident;

typedef struct dd_proc_info {
    char state; /* 'R', 'S', 'Z', ... */
    pid_t pgrp;
    pid_t sid;
    unsigned long long start_ticks;
    char comm[64];
} dd_proc_info;

/* Reads /proc/<pid>/stat. -ENOENT when there is no such process. */
int dd_proc_read(pid_t pid, dd_proc_info *out);
int dd_proc_boot_id(char *out, size_t len);
/* Fills id for a live pid. */
int dd_proc_ident_of(pid_t pid, dd_proc_ident *id);
/* True when id.pid is alive, not a zombie, and is the same process (same
 * kernel start time, same boot). */
bool dd_proc_ident_matches(const dd_proc_ident *id);
/* Lists pids (max n) whose environment holds DISPATCHD_SERVICE_TOKEN=token, or
 * whose process group is pgid (pgid 0: not used). Never lists the caller. */
int dd_proc_find(const char *token, pid_t pgid, pid_t *out, int n);
/* Sends sig to every process of group pgid that carries token (both must
 * match, so a recycled group number can never reach a stranger). Returns how
 * many were signalled. */
int dd_proc_kill_group_token(pid_t pgid, const char *token, int sig);
/* Lists pids (max n) that have path open (e.g. holders of a lock file). */
int dd_proc_holding(const char *path, pid_t *out, int n);
/* Which process listens on 127.0.0.1:port (or any address); 0 if unknown. */
pid_t dd_proc_port_owner(int port);
/* 0 if 127.0.0.1:port can be bound now, DD_EBUSY if taken. */
int dd_proc_port_free(int port);

/* ---- lock files (lock.c) --------------------------------------------- */

/* Opens (creating) path and takes an exclusive flock without waiting.
 * Returns the fd (O_CLOEXEC; the caller passes it to the server on purpose),
 * DD_EBUSY if another process holds it, or -errno. */
int dd_lock_acquire(const char *path);
/* True when some process holds the lock on path (probes with a fresh open
 * file description and releases at once). */
bool dd_lock_held(const char *path);

/* ---- status files (status.c) ----------------------------------------- */

#define DD_MAX_PORTS 3

typedef struct dd_status {
    char service[16];
    dd_proc_ident ident; /* the server process, leader of its own session */
    int ports[DD_MAX_PORTS];
    int nports;
    int64_t started_ms; /* wall clock */
    char token[40];
    pid_t supervisor; /* pid of `dispatchd up` supervising it, 0 if none */
    char cmd[1024];
} dd_status;

/* Writes path atomically (path.new, then rename). */
int dd_status_write(const char *path, const dd_status *st);
/* -ENOENT when absent, DD_ECORRUPT when it does not parse. */
int dd_status_read(const char *path, dd_status *st);

/* ---- protocol probes (probe.c) --------------------------------------- */

/* One TCP request/response check on 127.0.0.1:port: send req, succeed when
 * the reply starts with expect. Runs on loop; cb gets 0, DD_ETIMEOUT,
 * DD_EUNHEALTHY (answered something else) or -errno (refused). */
typedef void (*dd_probe_cb)(int status, void *arg);
int dd_probe_start(struct uv_loop_s *loop, int port, const char *req, const char *expect,
                   int64_t timeout_ms, dd_probe_cb cb, void *arg);
/* The same on a private loop, blocking the caller (CLI use). */
int dd_probe_run(int port, const char *req, const char *expect, int64_t timeout_ms);

/* ---- the services of the local stack (service.c) --------------------- */

typedef enum dd_service_kind {
    DD_SVC_REDIS = 0,
    DD_SVC_TEMPORAL = 1,
    DD_SVC_COUNT = 2,
} dd_service_kind;

typedef struct dd_service {
    dd_service_kind kind;
    const char *name;
    int ports[DD_MAX_PORTS]; /* ports[0] is probed */
    int nports;
    int probe_port;
    const char *probe_req;
    const char *probe_expect;
    int64_t start_timeout_ms;
    char *argv[40]; /* owned strings, NULL-terminated */
    /* owned, whole (a state dir of any length): <state>/<name>.lock ... */
    char *lock_path;
    char *status_path;
    char *log_path;
    char *data_dir;
} dd_service;

/* Finds a service by name ("redis", "temporal"): its kind, or DD_EINVAL. */
int dd_service_kind_parse(const char *name);
/* Builds the command and paths from cfg and checks the state dir is
 * writable; with need_binary, also that the server binary exists (start
 * needs it, stop and status do not). err gets a user-facing message. On
 * success free with dd_service_release; on failure nothing is left to free.
 * DD_EINVAL: the user's input cannot be used (the state dir is a file or not
 * writable, a --redis-bin/--temporal-bin path that is not there); -ENOENT:
 * the server binary is not installed. */
int dd_service_init(dd_service *s, dd_service_kind kind, const struct dd_config *cfg,
                    const char *self_dir, bool need_binary, char *err, size_t errlen);
void dd_service_release(dd_service *s);
/* "127.0.0.1:6379" etc. for humans. */
void dd_service_describe(const dd_service *s, char *out, size_t len);

/* ---- operations (stack.c) -------------------------------------------- */

typedef struct dd_health {
    bool lock_held;
    bool have_status;
    bool status_corrupt;
    bool alive;       /* pid exists and is not a zombie */
    bool identity_ok; /* same pid AND same kernel start time AND boot id */
    bool responding;  /* protocol-level probe answered */
    bool healthy;     /* all of the above */
    dd_status status;
    char detail[256]; /* why not healthy, for humans */
} dd_health;

/* Inspects every layer; never changes anything. */
void dd_stack_inspect(const dd_service *s, int64_t probe_timeout_ms, dd_health *h);

/* Decides what start must do, cleaning leftovers of a crash on the way (S3):
 *  - returns a lock fd (>= 0): the caller holds the lock and must spawn;
 *  - DD_ECONFLICT: already running and healthy (h describes it);
 *  - DD_ETIMEOUT: another starter held the lock for longer than the start
 *    timeout (racing start that never finished);
 *  - other negative: error, message in err. */
struct dd_log;
int dd_stack_prepare(const dd_service *s, struct dd_log *log, dd_health *h, char *err,
                     size_t errlen);
/* Kills every process of a service (its group, anything with its token,
 * anything holding its lock): TERM, wait up to timeout_ms, then KILL, and
 * waits (bounded) for the lock to be free. Removes the status file.
 * Returns 0, or DD_ETIMEOUT if something survived SIGKILL. */
int dd_stack_kill(const dd_service *s, const dd_status *st, int64_t timeout_ms,
                  struct dd_log *log);
/* A fresh random token for DISPATCHD_SERVICE_TOKEN. */
void dd_stack_token(char *out, size_t len);

/* ---- spawning (spawn.c) ---------------------------------------------- */

/* Starts the service on loop as a session leader (own session and process
 * group, S1) holding lockfd as fd 3, stdout/stderr appended to its log file
 * and DISPATCHD_SERVICE_TOKEN=token in its environment; then writes the
 * status file. Refuses with DD_EBUSY and a message naming the port when a
 * port is taken by another process (dd_service_check_ports). The caller
 * still owns lockfd and should close it once this returns (the server keeps
 * its own copy). exit_cb gets the uv exit event.
 * proc must be zeroed by the caller. Once uv_spawn was called, proc->type is
 * UV_PROCESS and the caller must uv_close it, also when this returns an
 * error (uv_spawn failed, or the status file could not be written: then
 * proc->pid > 0 and the server runs). proc->type still 0 (UV_UNKNOWN_HANDLE):
 * nothing was initialised, nothing to close. */
/* 0 when every port of s can be bound on 127.0.0.1 now; DD_EBUSY with a
 * message naming the service, the port, its holder and the option to change
 * otherwise. */
int dd_service_check_ports(const dd_service *s, char *err, size_t errlen);
struct uv_process_s;
typedef void (*dd_spawn_exit_cb)(struct uv_process_s *proc, int64_t status, int term_signal);
int dd_service_spawn(struct uv_loop_s *loop, const dd_service *s, int lockfd, const char *token,
                     pid_t supervisor, struct uv_process_s *proc, dd_spawn_exit_cb exit_cb,
                     dd_status *st, char *err, size_t errlen);

/* ---- supervision (supervisor.c) -------------------------------------- */

/* Keeps services up on one loop (S4): a crash is noticed from the child-exit
 * event (SIGCHLD via libuv, or a pidfd for servers adopted from an earlier
 * supervisor), and restarted at once if it had been up for stable_ms, else
 * after capped exponential backoff with jitter; a server that stops
 * answering its probe is restarted too; nothing restarts once shutdown has
 * begun. */
typedef struct dd_supervisor dd_supervisor;

typedef struct dd_supervisor_opts {
    int64_t stop_timeout_ms;    /* TERM -> KILL grace (default 10 s) */
    int64_t stable_ms;          /* uptime after which a crash restarts at once (3 s) */
    int64_t backoff_base_ms;    /* first delay of a crash loop (250 ms) */
    int64_t backoff_cap_ms;     /* longest delay (30 s) */
    int64_t probe_interval_ms;  /* health probe period while running (2 s) */
    int64_t probe_timeout_ms;   /* one probe (1 s) */
    int probe_failures;         /* consecutive failures that mean "hung" (3) */
    void (*on_ready)(dd_supervisor *sv, void *arg); /* every service answered, once */
    void *arg;
} dd_supervisor_opts;

struct dd_ctx;
/* services (n of them, at least one) are borrowed and must outlive the
 * supervisor. 0 and *out, or DD_EINVAL with a message in err. */
int dd_supervisor_new(const struct dd_ctx *ctx, dd_service *services, int n,
                      const dd_supervisor_opts *opts, dd_supervisor **out, char *err,
                      size_t errlen);
/* Starts (or adopts) every service. Errors that a restart cannot fix (port
 * taken by a foreign process, binary missing) are returned with a message;
 * then call dd_supervisor_close to stop what did start. */
int dd_supervisor_start(dd_supervisor *sv, char *err, size_t errlen);
bool dd_supervisor_all_running(const dd_supervisor *sv);
/* Stops every service cleanly (TERM, KILL after stop_timeout_ms; nothing
 * restarts from now on), closes every handle once every process is gone,
 * then frees sv and calls done(arg) (may be NULL) from the loop, never
 * inside this call. Call once. */
void dd_supervisor_close(dd_supervisor *sv, void (*done)(void *arg), void *arg);

#endif
