/* child.c - one command in its own session, stopped as a whole group. */
#include "child/child.h"
#include "child/will_proc.h"

#include "core/buf.h"
#include "core/env.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>


struct dd_child {
    uv_loop_t *loop;
    dd_log *log;
    char *name;
    uv_process_t *proc; /* NULL when not running */
    pid_t pid;
    uv_timer_t grace;
    bool stopping;
    bool closing;
    int pending; /* handle closes in flight */
    uint64_t started_us;
    dd_child_exit_cb exit_cb;
    void *arg;
    char *guard_exe; /* NULL: exec the command directly */
    int64_t guard_grace_ms;
    int64_t guard_lead_ms; /* the guard TERMs this long before the deadline */
    bool fenced;           /* acting deadlines in force (dd_child_set_guard) */
    int64_t deadline_ms;   /* acting deadline, CLOCK_BOOTTIME ms (0: none yet) */
    int live_wfd;          /* deadline pipe's write end while the command runs, else -1 */
    char *will;            /* the packed last will for the next start (a secret), or NULL */
    size_t will_len;
    const dd_will_proc *will_proc; /* the host's will process (borrowed), or NULL */
    void (*done)(void *);
    void *done_arg;
};

int dd_child_new(uv_loop_t *loop, dd_log *log, const char *name, dd_child_exit_cb exit_cb,
                 void *arg, dd_child **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!name || !*name) {
        dd_msgf(err, errlen, "a child command needs a name (its log lines carry it)");
        return DD_EINVAL;
    }
    dd_child *c = dd_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->log = log;
    c->name = dd_strdup(name);
    c->exit_cb = exit_cb;
    c->arg = arg;
    c->live_wfd = -1;
    uv_timer_init(loop, &c->grace);
    c->grace.data = c;
    *out = c;
    return 0;
}

static void dd_child_maybe_free(dd_child *c)
{
    /* A running command still owes us its exit event. */
    if (!c->closing || c->pending > 0 || c->proc)
        return;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    free(c->guard_exe);
    free(c->name);
    dd_child_set_will(c, NULL, 0);
    free(c);
    if (done)
        done(arg);
}

static void dd_child_handle_closed(uv_handle_t *h)
{
    dd_child *c = h->data;
    if (h != (uv_handle_t *)&c->grace)
        free(h);
    c->pending--;
    dd_child_maybe_free(c);
}

static void dd_child_on_exit(uv_process_t *p, int64_t status, int sig)
{
    dd_child *c = p->data;
    pid_t pid = c->pid;
    /* The group outlives its leader if the command forked: take it along. */
    kill(-pid, SIGKILL);
    c->proc = NULL;
    c->pid = 0;
    if (c->live_wfd >= 0) {
        close(c->live_wfd);
        c->live_wfd = -1;
    }
    uv_timer_stop(&c->grace);
    c->pending++;
    uv_close((uv_handle_t *)p, dd_child_handle_closed);
    dd_logf(c->log, c->stopping ? DD_LOG_INFO : DD_LOG_WARN, "child_exited",
            "child=%s pid=%d exit_status=%lld signal=%d ran_ms=%lld requested=%s wall_us=%lld",
            c->name, (int)pid, (long long)status, sig,
            (long long)((dd_mono_us() - c->started_us) / 1000), c->stopping ? "true" : "false",
            (long long)dd_wall_us());
    c->stopping = false;
    if (!c->closing && c->exit_cb)
        c->exit_cb(c, status, sig, c->arg);
    dd_child_maybe_free(c);
}

/* A pipe holding the will, its write end closed: the read end, or -1. */
static int dd_child_will_pipe(dd_child *c)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        dd_warn(c->log, "child_will_failed", "child=%s error=%s", c->name, strerror(errno));
        return -1;
    }
    fcntl(p[1], F_SETFL, O_NONBLOCK);
    ssize_t w = write(p[1], c->will, c->will_len);
    close(p[1]);
    if (w != (ssize_t)c->will_len) {
        dd_warn(c->log, "child_will_failed", "child=%s error=%s", c->name,
                w < 0 ? strerror(errno) : "the will does not fit the pipe");
        close(p[0]);
        return -1;
    }
    return p[0];
}

int dd_child_start(dd_child *c, char *const *argv, const char *const *env_extra, char *err,
                   size_t errlen)
{
    if (c->proc)
        return DD_EBUSY;
    if (c->fenced && (!c->guard_exe || c->deadline_ms - c->guard_lead_ms <= dd_boot_ms())) {
        /* Never start what could act past the deadline (or unguarded); in
         * the last term_lead_ms its guard would stop it at once anyway. */
        snprintf(err, errlen, "cannot start '%s': %s", argv[0],
                 c->guard_exe ? "its acting deadline has passed" : "no guard for its deadline");
        return DD_EFENCED;
    }
    char **env = dd_env_with(env_extra); /* ours shadow inherited ones */

    /* Through the guard: guard_exe __guard PPID:GRACE[:LIVE] -- argv... */
    char **run_argv = (char **)argv;
    char guard_arg[120];
    int live[2] = {-1, -1};
    if (c->guard_exe && c->fenced && pipe2(live, O_CLOEXEC) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot start '%s': pipe: %s", argv[0], strerror(e));
        free(env);
        return -e;
    }
    /* The last will goes to the guard as fd 4: written whole and closed
     * before it starts (it reads it only if dispatchd dies), never argv or
     * the environment (will.h). A will that does not fit the pipe is not
     * sent: the dispatcher then takes the threshold path. */
    int will_fd = live[0] >= 0 && c->will ? dd_child_will_pipe(c) : -1;
    /* and, as fd 5, the pipe to the host's will process, which runs it if
     * dispatchd dies (will_proc.h); without one the guard runs it itself */
    int hand_fd = will_fd >= 0 ? dd_will_proc_fd(c->will_proc) : -1;
    if (c->guard_exe) {
        size_t n = 0;
        while (argv[n])
            n++;
        run_argv = dd_xcalloc(n + 5, sizeof(char *));
        if (live[0] >= 0)
            snprintf(guard_arg, sizeof(guard_arg), "%d:%lld:%lld:%lld:%d", (int)getpid(),
                     (long long)c->guard_grace_ms, (long long)c->deadline_ms,
                     (long long)c->guard_lead_ms, hand_fd >= 0 ? 2 : will_fd >= 0 ? 1 : 0);
        else
            snprintf(guard_arg, sizeof(guard_arg), "%d:%lld", (int)getpid(),
                     (long long)c->guard_grace_ms);
        run_argv[0] = c->guard_exe;
        run_argv[1] = (char *)"__guard";
        run_argv[2] = guard_arg;
        run_argv[3] = (char *)"--";
        for (size_t i = 0; i < n; i++)
            run_argv[4 + i] = argv[i];
        run_argv[4 + n] = NULL;
    }
    uv_process_t *p = dd_xcalloc(1, sizeof(*p));
    uv_stdio_container_t stdio[6] = {
        {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2}, {.flags = UV_INHERIT_FD, .data.fd = live[0]},
        {.flags = UV_INHERIT_FD, .data.fd = will_fd},
        {.flags = UV_INHERIT_FD, .data.fd = hand_fd}};
    uv_process_options_t opts = {
        .exit_cb = dd_child_on_exit,
        .file = run_argv[0],
        .args = run_argv,
        .env = env,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = hand_fd >= 0 ? 6 : will_fd >= 0 ? 5 : live[0] >= 0 ? 4 : 3,
        .stdio = stdio,
    };
    p->data = c;
    int rc = uv_spawn(c->loop, p, &opts);
    free(env);
    if (run_argv != (char **)argv)
        free(run_argv);
    if (will_fd >= 0)
        close(will_fd); /* the guard has its copy as fd 4 */
    if (live[0] >= 0) {
        close(live[0]); /* the guard has its copy as fd 3 */
        if (rc < 0) {
            close(live[1]);
        } else {
            fcntl(live[1], F_SETFL, O_NONBLOCK);
            c->live_wfd = live[1];
        }
    }
    if (rc < 0) {
        snprintf(err, errlen, "cannot start '%s': %s", argv[0], uv_strerror(rc));
        /* uv_spawn initialised the handle even on failure: close it. */
        c->pending++;
        p->data = c;
        uv_close((uv_handle_t *)p, dd_child_handle_closed);
        return rc;
    }
    c->proc = p;
    c->pid = p->pid;
    c->started_us = dd_mono_us();
    dd_info(c->log, "child_started", "child=%s pid=%d command=%s wall_us=%lld", c->name,
            (int)c->pid, argv[0], (long long)dd_wall_us());
    return 0;
}

static void dd_child_grace_expired(uv_timer_t *t)
{
    dd_child *c = t->data;
    if (!c->proc)
        return;
    dd_warn(c->log, "child_kill", "child=%s pid=%d signal=KILL reason=%s", c->name, (int)c->pid,
            "did not exit after TERM");
    kill(-c->pid, SIGKILL);
}

void dd_child_stop(dd_child *c, int64_t grace_ms)
{
    if (!c->proc)
        return;
    if (c->fenced) {
        /* the KILL never comes later than the acting deadline */
        int64_t left = c->deadline_ms - dd_boot_ms();
        if (left < grace_ms)
            grace_ms = left < 0 ? 0 : left;
    }
    if (c->stopping) {
        /* a second, tighter stop (the deadline came closer) pulls the KILL in */
        if (uv_timer_get_due_in(&c->grace) > (uint64_t)grace_ms)
            uv_timer_start(&c->grace, dd_child_grace_expired, (uint64_t)grace_ms, 0);
        return;
    }
    c->stopping = true;
    dd_info(c->log, "child_stopping", "child=%s pid=%d signal=TERM grace_ms=%lld", c->name,
            (int)c->pid, (long long)grace_ms);
    /* A guard passes the TERM on to its command itself: a second TERM from
     * us could reach the command inside its TERM handler and kill it
     * (guard.c). Without a guard the whole group gets it. */
    kill(c->guard_exe ? c->pid : -c->pid, SIGTERM);
    uv_timer_start(&c->grace, dd_child_grace_expired, (uint64_t)grace_ms, 0);
}

bool dd_child_running(const dd_child *c)
{
    return c->proc != NULL;
}

pid_t dd_child_pid(const dd_child *c)
{
    return c->pid;
}

void dd_child_close(dd_child *c, void (*done)(void *arg), void *arg)
{
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    /* KILL before the deadline pipe closes: a guard that saw it close first
     * would take dispatchd for dead and write its last will */
    if (c->proc)
        kill(-c->pid, SIGKILL); /* its exit event closes the process handle */
    if (c->live_wfd >= 0) {
        close(c->live_wfd);
        c->live_wfd = -1;
    }
    c->pending++;
    uv_close((uv_handle_t *)&c->grace, dd_child_handle_closed);
}

void dd_child_set_guard(dd_child *c, const char *guard_exe, int64_t grace_ms, bool fenced,
                        int64_t term_lead_ms)
{
    free(c->guard_exe);
    c->guard_exe = guard_exe ? dd_strdup(guard_exe) : NULL;
    c->guard_grace_ms = grace_ms;
    c->fenced = fenced;
    c->guard_lead_ms = term_lead_ms < 0 ? 0 : term_lead_ms;
}

void dd_child_set_deadline(dd_child *c, int64_t deadline_boot_ms)
{
    c->deadline_ms = deadline_boot_ms;
    if (c->live_wfd < 0)
        return;
    /* One 8-byte record per deadline: atomic on a pipe (< PIPE_BUF), so the
     * guard never reads half of one. Non-blocking: a guard that stopped
     * reading keeps the last deadline it read, which only stops it sooner. */
    int64_t v = deadline_boot_ms;
    if (write(c->live_wfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        dd_warn(c->log, "child_deadline_failed", "child=%s error=%s", c->name, strerror(errno));
}

int64_t dd_child_deadline(const dd_child *c)
{
    return c->deadline_ms;
}

void dd_child_set_will_proc(dd_child *c, const dd_will_proc *p)
{
    c->will_proc = p;
}

void dd_child_set_will(dd_child *c, const void *will, size_t len)
{
    if (c->will) {
        explicit_bzero(c->will, c->will_len); /* it holds the Redis password */
        free(c->will);
    }
    c->will = NULL;
    c->will_len = 0;
    if (will && len > 0) {
        c->will = dd_xmalloc(len);
        memcpy(c->will, will, len);
        c->will_len = len;
    }
}

/* ---- for the helper processes (guard.c, will_proc.c) --------------------- */

dd_log *dd_child_helper_log(const char *component)
{
    dd_log *log = dd_log_new(stderr, DD_LOG_INFO);
    dd_log_format format = DD_LOG_LOGFMT;
    const char *f = getenv("DISPATCHD_LOG_FORMAT");
    if (f && dd_log_format_parse(f, &format) == 0)
        dd_log_set_format(log, format);
    const char *sid = getenv("DISPATCHD_SERVER_ID");
    if (sid && *sid)
        dd_log_add_field(log, "server_id", sid);
    dd_log_add_field(log, "component", component);
    return log;
}

void dd_child_close_from(int lo)
{
    if (syscall(SYS_close_range, (unsigned)lo, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = lo; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close((int)fd);
}
