/* supervisor.c - `dispatchd up`: keep every service of the local stack up.
 *
 * Each service is a small state machine (as in s6/runit), driven only by
 * loop events:
 *
 *   state \ event  exit                 probe ok     probe fail (xN)   timer          shutdown
 *   STARTING       restart (backoff)    -> RUNNING   past deadline:    -              TERM group
 *                                                    TERM+KILL
 *   RUNNING        restart (now if up   reset fails  TERM, KILL after  -              TERM group
 *                  >= stable, else      count        grace (hung)
 *                  backoff)
 *   BACKOFF        -                    -            -                 spawn          -> STOPPED
 *   STOPPING       -> STOPPED           -            -                 KILL group     -
 *
 * Exit events come from SIGCHLD (libuv reaps our children), or from a
 * pidfd becoming readable for a server adopted from an earlier supervisor
 * that died: no polling for liveness anywhere. The probe timer is only for
 * "alive but not answering". */
#include "proc/proc.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"
#include "metrics/metrics.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

typedef enum dd_unit_state {
    DD_UNIT_IDLE,
    DD_UNIT_STARTING,
    DD_UNIT_RUNNING,
    DD_UNIT_BACKOFF,
    DD_UNIT_STOPPING,
    DD_UNIT_STOPPED,
} dd_unit_state;

static const char *const dd_unit_state_names[] = {"idle",    "starting", "running",
                                                  "backoff", "stopping", "stopped"};

typedef struct dd_unit {
    struct dd_supervisor *sv;
    dd_service *svc;
    dd_unit_state state;
    uv_process_t *proc; /* our child, or NULL */
    uv_poll_t *pidpoll; /* adopted server: its pidfd, or NULL */
    int pidfd;
    pid_t pid; /* leader of the service's session/group, 0 if none */
    dd_status st;
    uv_timer_t timer;       /* backoff, start deadline, kill grace */
    uv_timer_t probe_timer; /* health probes */
    bool probe_inflight;
    int probe_fails;
    bool hung_kill_sent;
    bool ever_ready;
    uint64_t started_mono;
    int lock_tries;
    unsigned restarts;
    dd_backoff backoff;
} dd_unit;

struct dd_supervisor {
    dd_ctx ctx;
    dd_supervisor_opts opts;
    dd_unit *units;
    int n;
    bool shutting_down;
    bool ready_reported;
    bool timers_closed;
    void (*done)(void *); /* dd_supervisor_close */
    void *done_arg;
    int closing; /* handle closes still pending */
    dd_metric *m_restarts;
    dd_metric *m_up;
};

static void dd_unit_spawn(dd_unit *u);
static void dd_sv_check_stopped(dd_supervisor *sv);

static void dd_unit_set_up(dd_unit *u, int up)
{
    dd_metric_set(u->sv->m_up, DD_L1(u->svc->name), up);
}

int dd_supervisor_new(const dd_ctx *ctx, dd_service *services, int n,
                      const dd_supervisor_opts *opts, dd_supervisor **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (n < 1) { /* nothing to wait for: close could not call back from the loop */
        dd_msgf(err, errlen, "the supervisor needs at least one service");
        return DD_EINVAL;
    }
    dd_supervisor *sv = dd_xcalloc(1, sizeof(*sv));
    sv->ctx = *ctx;
    sv->opts = *opts;
    if (sv->opts.stop_timeout_ms <= 0)
        sv->opts.stop_timeout_ms = 10000;
    if (sv->opts.stable_ms <= 0)
        sv->opts.stable_ms = 3000;
    if (sv->opts.backoff_base_ms <= 0)
        sv->opts.backoff_base_ms = 250;
    if (sv->opts.backoff_cap_ms <= 0)
        sv->opts.backoff_cap_ms = 30000;
    if (sv->opts.probe_interval_ms <= 0)
        sv->opts.probe_interval_ms = 2000;
    if (sv->opts.probe_timeout_ms <= 0)
        sv->opts.probe_timeout_ms = 1000;
    if (sv->opts.probe_failures <= 0)
        sv->opts.probe_failures = 3;
    sv->n = n;
    sv->units = dd_xcalloc((size_t)n, sizeof(dd_unit));
    const char *const lbl[] = {"service", NULL};
    if (ctx->metrics) {
        sv->m_restarts = dd_metrics_family(ctx->metrics, DD_COUNTER, "dispatchd_stack_restarts_total",
                                           "Automatic restarts of a supervised local server (temporal, redis).",
                                           lbl, NULL, 0);
        sv->m_up = dd_metrics_family(ctx->metrics, DD_GAUGE, "dispatchd_stack_up",
                                     "1 while the supervised local server passes its health checks, else 0.",
                                     lbl, NULL, 0);
    }
    for (int i = 0; i < n; i++) {
        dd_unit *u = &sv->units[i];
        u->sv = sv;
        u->svc = &services[i];
        u->pidfd = -1;
        uv_timer_init(ctx->loop, &u->timer);
        uv_timer_init(ctx->loop, &u->probe_timer);
        u->timer.data = u->probe_timer.data = u;
        dd_backoff_init(&u->backoff, sv->opts.backoff_base_ms, sv->opts.backoff_cap_ms, 0);
        dd_metric_add(sv->m_restarts, DD_L1(u->svc->name), 0);
        dd_unit_set_up(u, 0);
    }
    *out = sv;
    return 0;
}

static void dd_unit_kill_group(dd_unit *u, int sig)
{
    /* Only the group we created: u->pid is the leader we spawned or adopted
     * after checking its identity, and the kernel does not hand out a pid
     * number again while a process group of that number has members. */
    if (u->pid > 0)
        kill(-u->pid, sig);
}

static void dd_proc_closed(uv_handle_t *h)
{
    dd_supervisor *sv = h->data;
    free(h);
    sv->closing--;
    dd_sv_check_stopped(sv);
}

static void dd_poll_closed(uv_handle_t *h)
{
    dd_unit *u = h->data;
    dd_supervisor *sv = u->sv;
    free(h);
    if (u->pidfd >= 0) {
        close(u->pidfd);
        u->pidfd = -1;
    }
    sv->closing--;
    dd_sv_check_stopped(sv);
}

static void dd_unit_timer_restart(uv_timer_t *t)
{
    dd_unit_spawn(t->data);
}

/* The service's process is gone (however it went). */
static void dd_unit_exited(dd_unit *u, int64_t status, int sig)
{
    dd_supervisor *sv = u->sv;
    uint64_t now = dd_mono_ms();
    uint64_t uptime = u->started_mono ? now - u->started_mono : 0;
    pid_t pid = u->pid;
    /* Grandchildren die with their session: nothing of the old run may
     * linger holding the lock or the port. The leader is already reaped, so
     * its group number is no proof any more: only processes of that group
     * that also carry this run's token are killed. */
    int strays = dd_proc_kill_group_token(pid, u->st.token, SIGKILL);
    if (strays > 0)
        dd_info(sv->ctx.log, "strays_killed", "service=%s pgid=%d processes=%d", u->svc->name,
                (int)pid, strays);
    u->pid = 0;
    uv_timer_stop(&u->timer);
    uv_timer_stop(&u->probe_timer);
    u->probe_fails = 0;
    u->hung_kill_sent = false;
    dd_unit_set_up(u, 0);
    dd_logf(sv->ctx.log, (sv->shutting_down || u->state == DD_UNIT_STOPPING) ? DD_LOG_INFO : DD_LOG_WARN,
            "service_exited",
            "service=%s pid=%d exit_status=%lld signal=%d uptime_ms=%llu state=%s wall_us=%lld",
            u->svc->name, (int)pid, (long long)status, sig, (unsigned long long)uptime,
            dd_unit_state_names[u->state], (long long)dd_wall_us());
    if (sv->shutting_down) {
        u->state = DD_UNIT_STOPPED;
        unlink(u->svc->status_path);
        dd_sv_check_stopped(sv);
        return;
    }
    int64_t delay = 0;
    if ((int64_t)uptime >= sv->opts.stable_ms) {
        dd_backoff_reset(&u->backoff);
    } else {
        delay = dd_backoff_next(&u->backoff);
    }
    u->state = DD_UNIT_BACKOFF;
    if (delay == 0) {
        dd_unit_spawn(u);
    } else {
        dd_info(sv->ctx.log, "service_restart_scheduled", "service=%s delay_ms=%lld attempt=%u",
                u->svc->name, (long long)delay, u->backoff.attempt);
        uv_timer_start(&u->timer, dd_unit_timer_restart, (uint64_t)delay, 0);
    }
}

static void dd_unit_on_exit(uv_process_t *proc, int64_t status, int sig)
{
    dd_unit *u = proc->data;
    dd_supervisor *sv = u->sv;
    u->proc = NULL;
    proc->data = sv;
    sv->closing++;
    uv_close((uv_handle_t *)proc, dd_proc_closed);
    dd_unit_exited(u, status, sig);
}

static void dd_unit_on_pidfd(uv_poll_t *p, int status, int events)
{
    dd_unit *u = p->data;
    uv_poll_stop(p);
    u->pidpoll = NULL;
    u->sv->closing++;
    uv_close((uv_handle_t *)p, dd_poll_closed);
    /* Not our child: init reaps it and we never see the status. */
    dd_unit_exited(u, -1, 0);
}

static void dd_unit_probe_tick(uv_timer_t *t);

static void dd_unit_kill_grace(uv_timer_t *t)
{
    dd_unit *u = t->data;
    dd_warn(u->sv->ctx.log, "service_kill", "service=%s pid=%d signal=KILL reason=%s",
            u->svc->name, (int)u->pid,
            u->state == DD_UNIT_STOPPING ? "stop timeout" : "did not exit after TERM");
    dd_unit_kill_group(u, SIGKILL);
}

static void dd_unit_term(dd_unit *u, int64_t grace_ms)
{
    dd_unit_kill_group(u, SIGTERM);
    uv_timer_start(&u->timer, dd_unit_kill_grace, (uint64_t)grace_ms, 0);
}

static void dd_unit_became_ready(dd_unit *u)
{
    dd_supervisor *sv = u->sv;
    u->state = DD_UNIT_RUNNING;
    u->probe_fails = 0;
    uv_timer_stop(&u->timer);
    dd_unit_set_up(u, 1);
    char where[128];
    dd_service_describe(u->svc, where, sizeof(where));
    dd_info(sv->ctx.log, "service_ready", "service=%s pid=%d address=%s startup_ms=%llu restarts=%u",
            u->svc->name, (int)u->pid, where,
            (unsigned long long)(dd_mono_ms() - u->started_mono), u->restarts);
    u->ever_ready = true;
    uv_timer_start(&u->probe_timer, dd_unit_probe_tick, (uint64_t)sv->opts.probe_interval_ms,
                   (uint64_t)sv->opts.probe_interval_ms);
    if (!sv->ready_reported && dd_supervisor_all_running(sv)) {
        sv->ready_reported = true;
        if (sv->opts.on_ready)
            sv->opts.on_ready(sv, sv->opts.arg);
    }
}

static void dd_unit_probe_done(int status, void *arg)
{
    dd_unit *u = arg;
    dd_supervisor *sv = u->sv;
    u->probe_inflight = false;
    if (sv->shutting_down || u->pid == 0) {
        dd_sv_check_stopped(sv);
        return;
    }
    if (u->state == DD_UNIT_STARTING) {
        if (status == 0)
            dd_unit_became_ready(u);
        return;
    }
    if (u->state != DD_UNIT_RUNNING)
        return;
    if (status == 0) {
        if (u->probe_fails)
            dd_info(sv->ctx.log, "service_probe_recovered", "service=%s", u->svc->name);
        u->probe_fails = 0;
        dd_unit_set_up(u, 1);
        return;
    }
    u->probe_fails++;
    dd_unit_set_up(u, 0);
    dd_warn(sv->ctx.log, "service_probe_failed", "service=%s pid=%d port=%d error=%s failures=%d",
            u->svc->name, (int)u->pid, u->svc->probe_port, dd_strerror(status), u->probe_fails);
    if (u->probe_fails >= sv->opts.probe_failures && !u->hung_kill_sent) {
        u->hung_kill_sent = true;
        dd_warn(sv->ctx.log, "service_hung", "service=%s pid=%d action=restart", u->svc->name,
                (int)u->pid);
        dd_unit_term(u, 2000);
    }
}

static void dd_unit_probe_tick(uv_timer_t *t)
{
    dd_unit *u = t->data;
    dd_supervisor *sv = u->sv;
    if (u->probe_inflight || u->pid == 0 || sv->shutting_down)
        return;
    u->probe_inflight = true;
    dd_probe_start(sv->ctx.loop, u->svc->probe_port, u->svc->probe_req, u->svc->probe_expect,
                   sv->opts.probe_timeout_ms, dd_unit_probe_done, u);
}

static void dd_unit_start_deadline(uv_timer_t *t)
{
    dd_unit *u = t->data;
    if (u->state != DD_UNIT_STARTING)
        return;
    dd_warn(u->sv->ctx.log, "service_start_timeout", "service=%s pid=%d timeout_ms=%lld",
            u->svc->name, (int)u->pid, (long long)u->svc->start_timeout_ms);
    u->hung_kill_sent = true;
    dd_unit_term(u, 2000);
}

/* Spawns holding lockfd (closed here: the server keeps its own copy).
 * Returns 0 or an error with a message in err. */
static int dd_unit_spawn_locked(dd_unit *u, int lockfd, char *err, size_t errlen)
{
    dd_supervisor *sv = u->sv;
    char token[40];
    dd_stack_token(token, sizeof(token));
    uv_process_t *proc = dd_xcalloc(1, sizeof(*proc));
    int rc = dd_service_spawn(sv->ctx.loop, u->svc, lockfd, token, getpid(), proc,
                              dd_unit_on_exit, &u->st, err, errlen);
    close(lockfd);
    if (rc < 0 && proc->pid <= 0) {
        if (proc->type == UV_PROCESS) {
            /* uv_spawn failed: the handle is in the loop all the same and
             * only its close callback may free it */
            proc->data = sv;
            sv->closing++;
            uv_close((uv_handle_t *)proc, dd_proc_closed);
        } else {
            free(proc);
        }
        return rc;
    }
    proc->data = u;
    u->proc = proc;
    u->pid = proc->pid;
    u->state = DD_UNIT_STARTING;
    u->started_mono = dd_mono_ms();
    if (rc < 0) {
        /* Running but without a status file nobody could identify it: kill
         * it; its exit event schedules the retry. */
        kill(-proc->pid, SIGKILL);
        return rc;
    }
    dd_info(sv->ctx.log, "service_started", "service=%s pid=%d restarts=%u wall_us=%lld",
            u->svc->name, (int)u->pid, u->restarts, (long long)dd_wall_us());
    uv_timer_start(&u->timer, dd_unit_start_deadline, (uint64_t)u->svc->start_timeout_ms, 0);
    /* Fast probes while starting so readiness is seen within ~10 ms. */
    uv_timer_start(&u->probe_timer, dd_unit_probe_tick, 10, 10);
    return 0;
}

static void dd_unit_spawn(dd_unit *u)
{
    dd_supervisor *sv = u->sv;
    if (sv->shutting_down || dd_ctx_cancelled(&sv->ctx)) {
        u->state = DD_UNIT_STOPPED;
        dd_sv_check_stopped(sv);
        return;
    }
    int fd = dd_lock_acquire(u->svc->lock_path);
    if (fd == DD_EBUSY && u->lock_tries < 100) {
        u->lock_tries++;
        u->state = DD_UNIT_BACKOFF;
        uv_timer_start(&u->timer, dd_unit_timer_restart, 20, 0);
        return;
    }
    if (fd < 0) {
        int64_t delay = dd_backoff_next(&u->backoff);
        dd_error(sv->ctx.log, "service_lock_failed", "service=%s lock=%s error=%s retry_in_ms=%lld",
                 u->svc->name, u->svc->lock_path, dd_strerror(fd), (long long)delay);
        u->lock_tries = 0;
        u->state = DD_UNIT_BACKOFF;
        uv_timer_start(&u->timer, dd_unit_timer_restart, (uint64_t)delay, 0);
        return;
    }
    u->lock_tries = 0;
    u->restarts++;
    dd_metric_add(sv->m_restarts, DD_L1(u->svc->name), 1);
    dd_info(sv->ctx.log, "service_restart", "service=%s restarts=%u wall_us=%lld", u->svc->name,
            u->restarts, (long long)dd_wall_us());
    char err[512];
    int rc = dd_unit_spawn_locked(u, fd, err, sizeof(err));
    if (rc < 0) {
        int64_t delay = dd_backoff_next(&u->backoff);
        dd_error(sv->ctx.log, "service_spawn_failed", "service=%s error=%s retry_in_ms=%lld",
                 u->svc->name, err, (long long)delay);
        if (!u->proc) {
            u->state = DD_UNIT_BACKOFF;
            uv_timer_start(&u->timer, dd_unit_timer_restart, (uint64_t)delay, 0);
        }
    }
}

/* Watches a server we did not spawn (left by a supervisor that died). */
static int dd_unit_adopt(dd_unit *u, const dd_health *h)
{
    dd_supervisor *sv = u->sv;
    int fd = (int)syscall(SYS_pidfd_open, h->status.ident.pid, 0);
    if (fd < 0)
        return -errno;
    /* The pid could have died and been reused between the identity check
     * and pidfd_open: check again now that the pidfd pins the process. */
    if (!dd_proc_ident_matches(&h->status.ident)) {
        close(fd);
        return -ESRCH;
    }
    u->pidfd = fd;
    u->pidpoll = dd_xcalloc(1, sizeof(uv_poll_t));
    uv_poll_init(sv->ctx.loop, u->pidpoll, fd);
    u->pidpoll->data = u;
    uv_poll_start(u->pidpoll, UV_READABLE, dd_unit_on_pidfd);
    u->pid = h->status.ident.pid;
    u->st = h->status;
    u->st.supervisor = getpid();
    dd_status_write(u->svc->status_path, &u->st);
    u->started_mono = dd_mono_ms() - (uint64_t)(dd_wall_ms() - h->status.started_ms);
    dd_info(sv->ctx.log, "service_adopted", "service=%s pid=%d previous_supervisor=%d",
            u->svc->name, (int)u->pid, (int)h->status.supervisor);
    dd_unit_became_ready(u);
    return 0;
}

int dd_supervisor_start(dd_supervisor *sv, char *err, size_t errlen)
{
    for (int i = 0; i < sv->n; i++) {
        dd_unit *u = &sv->units[i];
        dd_health h;
        int fd = dd_stack_prepare(u->svc, sv->ctx.log, &h, err, errlen);
        if (fd == DD_ECONFLICT) {
            if (dd_unit_adopt(u, &h) == 0)
                continue;
            /* Vanished while we looked: start it ourselves. */
            fd = dd_stack_prepare(u->svc, sv->ctx.log, &h, err, errlen);
        }
        if (fd < 0) {
            u->state = DD_UNIT_STOPPED;
            return fd;
        }
        int rc = dd_unit_spawn_locked(u, fd, err, errlen);
        if (rc < 0) {
            if (!u->proc)
                u->state = DD_UNIT_STOPPED;
            return rc;
        }
    }
    return 0;
}

bool dd_supervisor_all_running(const dd_supervisor *sv)
{
    for (int i = 0; i < sv->n; i++)
        if (sv->units[i].state != DD_UNIT_RUNNING)
            return false;
    return true;
}

void dd_supervisor_close(dd_supervisor *sv, void (*done)(void *arg), void *arg)
{
    if (sv->shutting_down)
        return;
    sv->done = done;
    sv->done_arg = arg;
    sv->shutting_down = true;
    dd_info(sv->ctx.log, "stack_stopping", "services=%d stop_timeout_ms=%lld", sv->n,
            (long long)sv->opts.stop_timeout_ms);
    for (int i = 0; i < sv->n; i++) {
        dd_unit *u = &sv->units[i];
        uv_timer_stop(&u->timer);
        uv_timer_stop(&u->probe_timer);
        if (u->pid > 0) {
            u->state = DD_UNIT_STOPPING;
            dd_unit_term(u, sv->opts.stop_timeout_ms);
        } else {
            u->state = DD_UNIT_STOPPED;
        }
    }
    dd_sv_check_stopped(sv);
}

static void dd_unit_timer_closed(uv_handle_t *h)
{
    dd_unit *u = h->data;
    dd_supervisor *sv = u->sv;
    sv->closing--;
    dd_sv_check_stopped(sv);
}

/* Frees sv once every process is gone and every handle closed: only ever
 * reached from a close callback (timers_closed opens at least two). */
static void dd_sv_check_stopped(dd_supervisor *sv)
{
    if (!sv->shutting_down)
        return;
    for (int i = 0; i < sv->n; i++) {
        dd_unit *u = &sv->units[i];
        if (u->state != DD_UNIT_STOPPED || u->probe_inflight || u->proc || u->pidpoll)
            return;
    }
    /* Every process is gone: close our own handles once, then report when
     * the last close callback has run. */
    if (!sv->timers_closed) {
        sv->timers_closed = true;
        for (int i = 0; i < sv->n; i++) {
            dd_unit *u = &sv->units[i];
            sv->closing += 2;
            uv_close((uv_handle_t *)&u->timer, dd_unit_timer_closed);
            uv_close((uv_handle_t *)&u->probe_timer, dd_unit_timer_closed);
        }
    }
    if (sv->closing > 0)
        return;
    dd_info(sv->ctx.log, "stack_stopped", "services=%d", sv->n);
    void (*done)(void *) = sv->done;
    void *arg = sv->done_arg;
    free(sv->units);
    free(sv);
    if (done)
        done(arg);
}
