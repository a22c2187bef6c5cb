/* will_proc.c - the host's will process (will_proc.h): dispatchd's handle
 * on it, the guard's hand-over, and the process itself. */
#include "child/will_proc.h"
#include "child/child.h" /* dd_child_helper_log, dd_child_close_from */
#include "child/will.h"

#include "core/buf.h"
#include "core/ctx.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* A frame: 4 bytes of length (host order: both ends are this binary on
 * this host), then the packed will. Whole frames only (PIPE_BUF). */
#define DD_WILL_FRAME_HEAD 4
#define DD_WILL_FRAME_MAX PIPE_BUF
#define DD_WILL_BYE 'B'
#define DD_WILL_RUN_MS 5000 /* one will's budget, as a guard's own */
#define DD_WILL_WAIT_DEATH_MS 1000 /* a will handed over before fd 3 closed */

/* ---- the guard's side ---------------------------------------------------- */

int dd_will_hand_over(int fd, const void *will, size_t len, int timeout_ms)
{
    if (len == 0 || len > DD_WILL_FRAME_MAX - DD_WILL_FRAME_HEAD)
        return DD_EINVAL;
    unsigned char frame[DD_WILL_FRAME_MAX];
    uint32_t n = (uint32_t)len;
    memcpy(frame, &n, DD_WILL_FRAME_HEAD);
    memcpy(frame + DD_WILL_FRAME_HEAD, will, len);
    size_t total = DD_WILL_FRAME_HEAD + len;
    int rc = -ETIMEDOUT;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int round = 0; round < 100000; round++) { /* bounded by the clock too */
        /* at most PIPE_BUF on a pipe: all of it or nothing, never mixed
         * with another guard's frame */
        ssize_t w = write(fd, frame, total);
        if (w == (ssize_t)total) {
            rc = 0;
            break;
        }
        if (w >= 0) { /* not a pipe after all: a frame cut in two is lost */
            rc = -EIO;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            rc = -errno; /* EPIPE: nobody reads it any more */
            break;
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long long left = timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000LL +
                                       (t.tv_nsec - t0.tv_nsec) / 1000000LL);
        if (left <= 0)
            break;
        struct pollfd p = {fd, POLLOUT, 0};
        poll(&p, 1, (int)(left > 100 ? 100 : left));
    }
    explicit_bzero(frame, sizeof(frame)); /* the password */
    return rc;
}

/* ---- dispatchd's side ---------------------------------------------------- */

struct dd_will_proc {
    uv_loop_t *loop;
    dd_log *log;
    char *exe, *server_id;
    int64_t cap_ms;
    uv_process_t *proc; /* NULL while none runs */
    int ctl_wfd;        /* our end of its control pipe ("bye", or its end at our death) */
    /* The will pipe: made once and kept across restarts, so a guard started
     * before a restart hands its will to the new process. We hold the read
     * end too (for the next process): no frame comes while we live, and at
     * our death only the will process's copy is left (none: EPIPE). */
    int in_rfd, in_wfd;
    uv_timer_t timer;   /* a restart's back-off, or the KILL after "bye" */
    int restarts;       /* in a row: the back-off doubles with each */
    uint64_t started_ms;
    bool closing;
    int pending; /* handle closes in flight */
    void (*done)(void *);
    void *done_arg;
};

static int dd_will_proc_spawn(dd_will_proc *p, char *err, size_t errlen);

static void dd_will_proc_maybe_free(dd_will_proc *p)
{
    if (!p->closing || p->proc || p->pending > 0)
        return;
    void (*done)(void *) = p->done;
    void *arg = p->done_arg;
    free(p->exe);
    free(p->server_id);
    free(p);
    if (done)
        done(arg);
}

static void dd_will_proc_handle_closed(uv_handle_t *h)
{
    dd_will_proc *p = h->data;
    if (h != (uv_handle_t *)&p->timer)
        free(h);
    p->pending--;
    dd_will_proc_maybe_free(p);
}

static void dd_will_proc_close_fds(dd_will_proc *p, bool will_pipe)
{
    if (p->ctl_wfd >= 0)
        close(p->ctl_wfd);
    p->ctl_wfd = -1;
    if (!will_pipe)
        return;
    if (p->in_wfd >= 0)
        close(p->in_wfd);
    if (p->in_rfd >= 0)
        close(p->in_rfd);
    p->in_rfd = p->in_wfd = -1;
}

static void dd_will_proc_restart(uv_timer_t *t)
{
    dd_will_proc *p = t->data;
    char err[256];
    if (dd_will_proc_spawn(p, err, sizeof(err)) < 0) {
        int64_t delay = 1000LL << (p->restarts < 5 ? p->restarts : 5);
        p->restarts++;
        dd_warn(p->log, "will_process_failed", "error=%s retry_in_ms=%lld note=%s", err,
                (long long)delay, "the will pipe stays: guards hand their wills to the next one");
        uv_timer_start(&p->timer, dd_will_proc_restart, (uint64_t)delay, 0);
    }
}

static void dd_will_proc_on_exit(uv_process_t *h, int64_t status, int sig)
{
    dd_will_proc *p = h->data;
    int pid = h->pid;
    p->proc = NULL;
    p->pending++;
    uv_close((uv_handle_t *)h, dd_will_proc_handle_closed);
    dd_will_proc_close_fds(p, p->closing); /* the will pipe stays for the next one */
    if (p->closing) { /* after "bye": the KILL timer is no longer needed */
        if (status != 0 || sig != 0)
            dd_warn(p->log, "will_process_exited", "pid=%d exit_status=%lld signal=%d", pid,
                    (long long)status, sig);
        uv_timer_stop(&p->timer);
        p->pending++;
        uv_close((uv_handle_t *)&p->timer, dd_will_proc_handle_closed);
        return;
    }
    /* Not asked to go: someone killed it. A new one comes after a back-off,
     * on the same will pipe (a death of ours meanwhile: the guards get EPIPE
     * and run their own wills). */
    if (dd_mono_ms() - p->started_ms >= 60000)
        p->restarts = 0; /* it had been running a while: not a crash loop */
    int64_t delay = 1000LL << (p->restarts < 5 ? p->restarts : 5);
    p->restarts++;
    dd_warn(p->log, "will_process_exited", "pid=%d exit_status=%lld signal=%d restart_in_ms=%lld "
            "note=%s", pid, (long long)status, sig, (long long)delay,
            "the will pipe stays: guards hand their wills to the next one");
    uv_timer_start(&p->timer, dd_will_proc_restart, (uint64_t)delay, 0);
}

static int dd_will_proc_spawn(dd_will_proc *p, char *err, size_t errlen)
{
    int ctl[2], in[2];
    if (p->in_rfd < 0) {
        if (pipe2(in, O_CLOEXEC) < 0) {
            dd_msgf(err, errlen, "pipe: %s", strerror(errno));
            return -errno;
        }
        p->in_rfd = in[0];
        p->in_wfd = in[1];
    }
    if (pipe2(ctl, O_CLOEXEC) < 0) {
        dd_msgf(err, errlen, "pipe: %s", strerror(errno));
        return -errno;
    }
    char cap[32];
    snprintf(cap, sizeof(cap), "%lld", (long long)p->cap_ms);
    char *args[] = {p->exe, (char *)"__will", cap, NULL};
    /* its log lines name this host, like the guards' */
    char *sid = dd_strdupf("DISPATCHD_SERVER_ID=%s", p->server_id ? p->server_id : "");
    size_t n = 0;
    extern char **environ;
    while (environ[n])
        n++;
    char **env = dd_xcalloc(n + 2, sizeof(char *));
    size_t k = 0;
    /* none of dispatchd's settings (DISPATCHD_REDIS_PASSWORD, API keys...):
     * a will brings what it needs; the log format and the sanitizers'
     * options stay */
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "DISPATCHD_", 10) != 0 ||
            strncmp(environ[i], "DISPATCHD_LOG_FORMAT=", 21) == 0)
            env[k++] = environ[i];
    env[k++] = sid;
    env[k] = NULL;
    uv_stdio_container_t stdio[5] = {
        {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2}, {.flags = UV_INHERIT_FD, .data.fd = ctl[0]},
        {.flags = UV_INHERIT_FD, .data.fd = p->in_rfd}};
    /* its own session, like the guards: a terminal's ^C is dispatchd's to
     * handle (it ends with "bye"), not the will process's */
    uv_process_options_t o = {.exit_cb = dd_will_proc_on_exit,
                              .file = p->exe,
                              .args = args,
                              .env = env,
                              .flags = UV_PROCESS_DETACHED,
                              .stdio_count = 5,
                              .stdio = stdio};
    uv_process_t *h = dd_xcalloc(1, sizeof(*h));
    h->data = p;
    int rc = uv_spawn(p->loop, h, &o);
    free(env);
    free(sid);
    close(ctl[0]); /* its copy */
    if (rc < 0) {
        close(ctl[1]);
        p->pending++;
        uv_close((uv_handle_t *)h, dd_will_proc_handle_closed);
        dd_msgf(err, errlen, "cannot start '%s __will': %s", p->exe, uv_strerror(rc));
        return rc;
    }
    p->proc = h;
    p->started_ms = dd_mono_ms();
    p->ctl_wfd = ctl[1];
    dd_info(p->log, "will_process_started", "pid=%d", h->pid);
    return 0;
}

int dd_will_proc_start(uv_loop_t *loop, dd_log *log, const char *exe, const char *server_id,
                       int64_t cap_ms, dd_will_proc **out, char *err, size_t errlen)
{
    *out = NULL;
    dd_will_proc *p = dd_xcalloc(1, sizeof(*p));
    *p = (dd_will_proc){.loop = loop, .log = log, .exe = dd_strdup(exe),
                        .server_id = server_id ? dd_strdup(server_id) : NULL, .cap_ms = cap_ms,
                        .ctl_wfd = -1, .in_rfd = -1, .in_wfd = -1};
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    int rc = dd_will_proc_spawn(p, err, errlen);
    if (rc < 0) {
        p->closing = true;
        dd_will_proc_close_fds(p, true);
        p->pending++;
        uv_close((uv_handle_t *)&p->timer, dd_will_proc_handle_closed);
        return rc;
    }
    *out = p;
    return 0;
}

int dd_will_proc_fd(const dd_will_proc *p)
{
    return p && !p->closing ? p->in_wfd : -1;
}

static void dd_will_proc_kill(uv_timer_t *t)
{
    dd_will_proc *p = t->data;
    if (p->proc) {
        dd_warn(p->log, "will_process_kill", "pid=%d reason=%s", p->proc->pid,
                "did not exit 5 s after bye");
        uv_process_kill(p->proc, SIGKILL);
    }
}

void dd_will_proc_close(dd_will_proc *p, void (*done)(void *), void *arg)
{
    p->closing = true;
    p->done = done;
    p->done_arg = arg;
    uv_timer_stop(&p->timer);
    if (p->proc && p->ctl_wfd >= 0) {
        char bye = DD_WILL_BYE;
        ssize_t w = write(p->ctl_wfd, &bye, 1); /* an empty pipe: room for a byte */
        (void)w; /* if it failed the process is exiting anyway */
    }
    dd_will_proc_close_fds(p, true);
    if (p->proc) { /* its exit closes the timer (dd_will_proc_on_exit) */
        uv_timer_start(&p->timer, dd_will_proc_kill, 5000, 0); /* patient under load */
        return;
    }
    p->pending++;
    uv_close((uv_handle_t *)&p->timer, dd_will_proc_handle_closed);
}

/* ---- the process --------------------------------------------------------- */

#define DD_WILL_MAX_STORES 8

typedef struct dd_wp_item {
    struct dd_wp_item *next;
    struct dd_wp *wp;
    char *data; /* the packed will (a secret: wiped when freed) */
    size_t len;
    dd_will w;  /* points into data */
    uint64_t got_ms;
} dd_wp_item;

typedef struct dd_wp {
    uv_loop_t *loop;
    dd_log *log;
    dd_ctx ctx;
    uv_pipe_t ctl, in;
    uv_signal_t sigterm, sigint;
    uv_timer_t cap;
    int64_t cap_ms;
    /* bytes of the will pipe not yet a whole frame: a fixed buffer, so no
     * copy of a password is left behind by a reallocation */
    char frame[65536 + DD_WILL_FRAME_MAX];
    size_t frame_len;
    dd_wp_item *waiting; /* handed over before we saw dispatchd die */
    uv_timer_t drop;     /* drops waiting wills dispatchd's death did not follow */
    struct {
        dd_will conn; /* the first will's connection fields (point into its copy) */
        char *copy;
        size_t copy_len;
        dd_store *s;
    } stores[DD_WILL_MAX_STORES];
    int nstores;
    int jobs;
    uint64_t dead_ms; /* when dispatchd's end closed without a bye (0: not yet) */
    bool bye, in_eof, in_closed, ending;
    int released, fenced, failed;
} dd_wp;

static void dd_wp_item_free(dd_wp_item *it)
{
    explicit_bzero(it->data, it->len);
    free(it->data);
    free(it);
}

static void dd_wp_end(dd_wp *wp);
static void dd_wp_cap_fire(uv_timer_t *t);
static void dd_wp_drop_waiting(dd_wp *wp, const char *why);

static void dd_wp_maybe_end(dd_wp *wp)
{
    if ((wp->dead_ms || wp->bye) && wp->in_eof && wp->jobs == 0)
        dd_wp_end(wp);
}

static void dd_wp_done(int st, const char *holder, void *arg)
{
    dd_wp_item *it = arg;
    dd_wp *wp = it->wp;
    const dd_will *w = &it->w;
    long long took = (long long)(dd_mono_ms() - it->got_ms);
    long long since = (long long)(dd_mono_ms() - wp->dead_ms);
    if (st == 0) {
        wp->released++;
        dd_info(wp->log, "will_released",
                "workflow_id=%s run_id=%s epoch=%lld mode=%s took_ms=%lld since_death_ms=%lld "
                "wall_us=%lld",
                w->workflow_id, w->run_id, (long long)w->epoch, w->expire ? "expire" : "delete",
                took, since, (long long)dd_wall_us());
    } else if (st == DD_EFENCED) {
        wp->fenced++;
        dd_info(wp->log, "will_fenced",
                "workflow_id=%s run_id=%s epoch=%lld holder=%s took_ms=%lld note=%s",
                w->workflow_id, w->run_id, (long long)w->epoch, *holder ? holder : "none", took,
                "a newer owner holds the record: left alone");
    } else {
        wp->failed++;
        const char *why = "";
        for (int i = 0; i < wp->nstores; i++)
            if (dd_will_same_conn(&wp->stores[i].conn, w))
                why = dd_store_last_error(wp->stores[i].s);
        char e[400]; /* one value: each %s is quoted on its own */
        snprintf(e, sizeof(e), "%s%s%s", dd_strerror(st), *why ? ": " : "", why);
        dd_warn(wp->log, "will_failed",
                "workflow_id=%s run_id=%s epoch=%lld error=%s took_ms=%lld note=%s",
                w->workflow_id, w->run_id, (long long)w->epoch, e, took,
                "the standbys take over at the stale threshold instead");
    }
    dd_wp_item_free(it);
    wp->jobs--;
    dd_wp_maybe_end(wp);
}

/* The store for w's connection: one per Redis (in practice one, a daemon
 * has one store), opened at the first will that needs it. */
static dd_store *dd_wp_store(dd_wp *wp, const dd_will *w, char *err, size_t errlen)
{
    for (int i = 0; i < wp->nstores; i++)
        if (dd_will_same_conn(&wp->stores[i].conn, w))
            return wp->stores[i].s;
    if (wp->nstores == DD_WILL_MAX_STORES) {
        dd_msgf(err, errlen, "more than %d Redis connections in the wills of one dispatchd",
                DD_WILL_MAX_STORES);
        return NULL;
    }
    /* the connection fields must outlive the will they came with */
    dd_buf packed = DD_BUF_INIT;
    dd_will_pack(&packed, w);
    /* never in a log line (a store's error may quote its URL) */
    if (w->password && *w->password)
        dd_log_add_secret(wp->log, w->password);
    if (w->sentinel_password && *w->sentinel_password)
        dd_log_add_secret(wp->log, w->sentinel_password);
    int i = wp->nstores;
    if (dd_will_unpack(packed.data, packed.len, &wp->stores[i].conn) < 0 ||
        dd_will_store_open(&wp->ctx, w, &wp->stores[i].s, err, errlen) < 0) {
        explicit_bzero(packed.data, packed.len);
        dd_buf_release(&packed);
        if (!*err)
            dd_msgf(err, errlen, "cannot keep the will's connection");
        return NULL;
    }
    wp->stores[i].copy = packed.data;
    wp->stores[i].copy_len = packed.len;
    wp->nstores++;
    return wp->stores[i].s;
}

static void dd_wp_run(dd_wp *wp, dd_wp_item *it)
{
    char err[300] = "";
    dd_store *s = dd_wp_store(wp, &it->w, err, sizeof(err));
    if (!s) {
        wp->failed++;
        dd_warn(wp->log, "will_failed", "workflow_id=%s run_id=%s epoch=%lld error=%s note=%s",
                it->w.workflow_id, it->w.run_id, (long long)it->w.epoch, err,
                "the standbys take over at the stale threshold instead");
        dd_wp_item_free(it);
        return;
    }
    wp->jobs++;
    dd_will_job_start(wp->loop, s, &it->w, DD_WILL_RUN_MS, dd_wp_done, it);
}

/* dispatchd is gone: every will handed over so far, and from now on each
 * as it comes. */
static void dd_wp_dispatchd_died(dd_wp *wp)
{
    wp->dead_ms = dd_mono_ms();
    int n = 0;
    for (dd_wp_item *it = wp->waiting; it; it = it->next)
        n++;
    dd_info(wp->log, "will_process_active", "waiting_wills=%d cap_ms=%lld note=%s", n,
            (long long)wp->cap_ms, "dispatchd died: running the wills its guards hand over");
    uv_timer_start(&wp->cap, dd_wp_cap_fire, (uint64_t)wp->cap_ms, 0);
    uv_timer_stop(&wp->drop);
    dd_wp_item *it = wp->waiting;
    wp->waiting = NULL;
    while (it) {
        dd_wp_item *next = it->next;
        dd_wp_run(wp, it);
        it = next;
    }
}

/* No more wills: the pipe is closed, so a guard still to come gets EPIPE
 * and runs its will itself instead of writing into a pipe nobody reads. */
static void dd_wp_stop_reading(dd_wp *wp)
{
    wp->in_eof = true;
    if (!wp->in_closed) {
        wp->in_closed = true;
        uv_close((uv_handle_t *)&wp->in, NULL);
    }
}

static void dd_wp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static char slab[65536]; /* one loop, one reader at a time */
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void dd_wp_ctl_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    dd_wp *wp = st->data;
    if (nread > 0) {
        if (memchr(buf->base, DD_WILL_BYE, (size_t)nread))
            wp->bye = true;
        return;
    }
    if (nread == 0)
        return;
    uv_read_stop(st); /* the end (or an error: the same to us) */
    if (wp->bye) {
        /* a clean exit: every guard was told to stop, no will is due */
        dd_wp_drop_waiting(wp, "handed over although dispatchd exited cleanly: not run");
        dd_wp_stop_reading(wp);
        dd_wp_end(wp);
        return;
    }
    if (!wp->dead_ms)
        dd_wp_dispatchd_died(wp);
    dd_wp_maybe_end(wp);
}

static void dd_wp_cap_fire(uv_timer_t *t)
{
    dd_wp *wp = t->data;
    dd_warn(wp->log, "will_process_cap", "cap_ms=%lld jobs=%d note=%s", (long long)wp->cap_ms,
            wp->jobs, "stopped waiting for guards: a guard still running writes its own will");
    dd_wp_stop_reading(wp);
    dd_wp_maybe_end(wp);
}

/* True when dispatchd's end of the control pipe (fd 3) is closed. */
static bool dd_wp_ctl_hung_up(void)
{
    struct pollfd p = {3, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
}

static void dd_wp_drop_waiting(dd_wp *wp, const char *why)
{
    while (wp->waiting) {
        dd_wp_item *next = wp->waiting->next;
        dd_warn(wp->log, "will_dropped", "workflow_id=%s run_id=%s epoch=%lld reason=%s",
                wp->waiting->w.workflow_id, wp->waiting->w.run_id,
                (long long)wp->waiting->w.epoch, why);
        dd_wp_item_free(wp->waiting);
        wp->waiting = next;
    }
}

static void dd_wp_drop_fire(uv_timer_t *t)
{
    dd_wp *wp = t->data;
    if (wp->dead_ms)
        return;
    if (dd_wp_ctl_hung_up()) {
        dd_wp_dispatchd_died(wp);
        return;
    }
    dd_wp_drop_waiting(wp, "handed over while dispatchd is alive (not run: a will runs only "
                           "after dispatchd's death)");
}

/* Whole frames from the will pipe become wills. */
static void dd_wp_frames(dd_wp *wp)
{
    size_t off = 0;
    while (wp->frame_len - off >= DD_WILL_FRAME_HEAD) {
        uint32_t n;
        memcpy(&n, wp->frame + off, DD_WILL_FRAME_HEAD);
        if (n == 0 || n > DD_WILL_FRAME_MAX - DD_WILL_FRAME_HEAD) {
            dd_warn(wp->log, "will_pipe_corrupt", "frame_len=%u note=%s", (unsigned)n,
                    "no longer reading the will pipe: the guards still to come run their own "
                    "wills");
            dd_wp_stop_reading(wp);
            off = wp->frame_len;
            break;
        }
        if (wp->frame_len - off < DD_WILL_FRAME_HEAD + n)
            break;
        dd_wp_item *it = dd_xcalloc(1, sizeof(*it));
        it->wp = wp;
        it->len = n;
        it->data = dd_xmalloc(n);
        memcpy(it->data, wp->frame + off + DD_WILL_FRAME_HEAD, n);
        it->got_ms = dd_mono_ms();
        off += DD_WILL_FRAME_HEAD + n;
        if (dd_will_unpack(it->data, it->len, &it->w) < 0) {
            dd_warn(wp->log, "will_failed", "error=%s", "an unreadable will from a guard");
            dd_wp_item_free(it);
            continue;
        }
        if (!wp->dead_ms && dd_wp_ctl_hung_up())
            dd_wp_dispatchd_died(wp); /* its end is closed: the read just did not come yet */
        if (wp->dead_ms) {
            dd_wp_run(wp, it);
        } else {
            /* A guard hands a will over only after dispatchd died, and the
             * kernel closes dispatchd's end of fd 3 before it tells the
             * guard; wait a moment for that (the files of a dying process
             * with threads close with its last thread), then drop it: a will
             * must never run while dispatchd lives. */
            it->next = wp->waiting;
            wp->waiting = it;
            if (!uv_is_active((uv_handle_t *)&wp->drop))
                uv_timer_start(&wp->drop, dd_wp_drop_fire, DD_WILL_WAIT_DEATH_MS, 0);
        }
    }
    explicit_bzero(wp->frame, off);
    memmove(wp->frame, wp->frame + off, wp->frame_len - off);
    wp->frame_len -= off;
}

static void dd_wp_in_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    dd_wp *wp = st->data;
    if (nread > 0) {
        /* the slab is 64 KiB and what is left of a frame under 4 KiB */
        size_t k = (size_t)nread;
        if (k > sizeof(wp->frame) - wp->frame_len)
            k = sizeof(wp->frame) - wp->frame_len;
        memcpy(wp->frame + wp->frame_len, buf->base, k);
        wp->frame_len += k;
        explicit_bzero(buf->base, (size_t)nread);
        dd_wp_frames(wp);
        return;
    }
    if (nread == 0)
        return;
    dd_wp_stop_reading(wp); /* every guard and dispatchd closed their ends */
    dd_wp_maybe_end(wp);
}

static void dd_wp_signal(uv_signal_t *h, int signum)
{
    dd_wp *wp = h->data;
    dd_info(wp->log, "will_process_stopping", "signal=%d jobs=%d", signum, wp->jobs);
    wp->bye = wp->bye || !wp->dead_ms; /* dispatchd alive: nothing is due */
    dd_wp_stop_reading(wp);
    uv_read_stop((uv_stream_t *)&wp->ctl);
    dd_wp_maybe_end(wp);
}

static void dd_wp_end(dd_wp *wp)
{
    if (wp->ending)
        return;
    wp->ending = true;
    if (wp->dead_ms)
        dd_info(wp->log, "will_process_done", "released=%d fenced=%d failed=%d took_ms=%lld",
                wp->released, wp->fenced, wp->failed,
                (long long)(dd_mono_ms() - wp->dead_ms));
    uv_close((uv_handle_t *)&wp->ctl, NULL);
    dd_wp_stop_reading(wp);
    uv_close((uv_handle_t *)&wp->drop, NULL);
    uv_close((uv_handle_t *)&wp->sigterm, NULL);
    uv_close((uv_handle_t *)&wp->sigint, NULL);
    uv_close((uv_handle_t *)&wp->cap, NULL);
    for (int i = 0; i < wp->nstores; i++)
        dd_store_close(wp->stores[i].s, NULL, NULL);
}

int dd_will_main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: dispatchd __will CAP_MS (fd 3: dispatchd's control pipe, fd 4: "
                        "the guards' will pipe)\n");
        return 2;
    }
    /* Only 0-2 and our two pipes: nothing else dispatchd had open. */
    dd_child_close_from(5);
    signal(SIGPIPE, SIG_IGN);
    /* before any loop takes their numbers */
    if (fcntl(3, F_GETFD) < 0 || fcntl(4, F_GETFD) < 0) {
        fprintf(stderr, "dispatchd __will: fd 3 and fd 4 must be open (it is started by dispatchd "
                        "run/up only)\n");
        return 2;
    }
    static dd_wp wp; /* the frame buffer is large: not on the stack */
    wp.cap_ms = atoll(argv[1]) > 0 ? atoll(argv[1]) : 60000;
    wp.log = dd_child_helper_log("will");
    uv_loop_t loop;
    if (uv_loop_init(&loop) < 0) {
        dd_error(wp.log, "will_process_failed", "error=%s", "cannot make an event loop");
        dd_log_free(wp.log);
        return 1;
    }
    wp.loop = &loop;
    wp.ctx = (dd_ctx){.loop = &loop, .log = wp.log};
    uv_pipe_init(&loop, &wp.ctl, 0);
    uv_pipe_init(&loop, &wp.in, 0);
    wp.ctl.data = wp.in.data = &wp;
    int rc = uv_pipe_open(&wp.ctl, 3);
    if (rc == 0)
        rc = uv_pipe_open(&wp.in, 4);
    uv_signal_init(&loop, &wp.sigterm);
    uv_signal_init(&loop, &wp.sigint);
    uv_timer_init(&loop, &wp.cap);
    uv_timer_init(&loop, &wp.drop);
    wp.sigterm.data = wp.sigint.data = wp.cap.data = wp.drop.data = &wp;
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&wp.ctl, dd_wp_alloc, dd_wp_ctl_read);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&wp.in, dd_wp_alloc, dd_wp_in_read);
    if (rc < 0) {
        dd_error(wp.log, "will_process_failed", "error=%s note=%s", uv_strerror(rc),
                 "run by dispatchd only, with its pipes as fd 3 and 4");
        wp.in_eof = true;
        wp.bye = true;
        dd_wp_end(&wp);
    } else {
        uv_signal_start(&wp.sigterm, dd_wp_signal, SIGTERM);
        uv_signal_start(&wp.sigint, dd_wp_signal, SIGINT);
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* bounded: see will_proc.h */
    uv_loop_close(&loop);
    while (wp.waiting) {
        dd_wp_item *next = wp.waiting->next;
        dd_wp_item_free(wp.waiting);
        wp.waiting = next;
    }
    for (int i = 0; i < wp.nstores; i++) {
        explicit_bzero(wp.stores[i].copy, wp.stores[i].copy_len);
        free(wp.stores[i].copy);
    }
    explicit_bzero(wp.frame, sizeof(wp.frame));
    dd_log_free(wp.log);
    return rc < 0 ? 1 : 0;
}
