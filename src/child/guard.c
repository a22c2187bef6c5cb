/* guard.c - `dispatchd __guard PPID:GRACE_MS[:DEADLINE_MS:LEAD_MS[:WILL]] --
 * CMD ARGS...`, the first process of every owner child command.
 *
 * Why: the child command must act only while its dispatchd owns the
 * dispatcher and can show the fleet it is alive. The guard runs CMD in its
 * own process group (the guard leads it) and stops the whole group - TERM,
 * then KILL - when any of these happens:
 *  - dispatchd asks (TERM to the group);
 *  - dispatchd dies, even by kill -9 (PR_SET_PDEATHSIG, and the deadline
 *    pipe reads end-of-file);
 *  - the acting deadline comes: DEADLINE_MS is an absolute CLOCK_BOOTTIME
 *    time, and fd 3 is a pipe on which dispatchd writes each later deadline
 *    (8 bytes, one per heartbeat that landed in Redis; src/owner/fence.h).
 *    The guard TERMs CMD LEAD_MS before the deadline and KILLs it at the
 *    deadline. A dispatchd that is frozen (SIGSTOP, a hung loop) or cut off
 *    from Redis sends no later deadline, and its child is gone before anyone
 *    may consider the owner stale. The deadline comes from dispatchd, not
 *    from the guard's own start, so a restarted child never gets a fresh
 *    window.
 * Every stop's KILL comes at the deadline at the latest.
 *
 * The last will (WILL 1 or 2, will.h): fd 4 holds what dispatchd would
 * release. When dispatchd died (the two signs above, never a TERM, never the
 * deadline: a frozen dispatchd is not dead) the guard stops CMD's group as
 * always, and once CMD has exited the will goes out: with WILL 2 it is
 * handed to the host's will process on fd 5 (will_proc.h: one connection
 * for all the host's guards, event=will_handed), and otherwise, or when
 * that fails, the guard releases the record itself, fenced by run id and
 * epoch, and tells the standbys (event=will_released, will_fenced,
 * will_failed); then it exits. Signals are taken
 * through a signalfd and waited for with poll(), so none can slip in
 * between a check and a wait. It exits with CMD's status (128 + signal when
 * CMD died of one).
 *
 * Only the guard sends CMD its TERM: dispatchd TERMs the guard alone, never
 * the group (a second TERM while CMD runs its TERM handler can kill it and
 * turn its clean exit 0 into 143). Its parent's death arrives as SIGUSR2
 * (PR_SET_PDEATHSIG), sent by the kernel as from dispatchd's pid, so the
 * guard can tell "dispatchd died" from "dispatchd asked": after a kill -9
 * the TERM-based check raced (the parent death signal comes when the
 * spawning thread dies, while getppid() still names the dying dispatchd).
 * A SIGUSR2 from anyone else (CMD can signal its own group) is ignored.
 *
 * The guard is a child subreaper: whatever CMD starts, also what leaves
 * its group (setsid), becomes the guard's child when its parent dies, so a
 * stop ends everything CMD started (dd_guard_kill_leftovers), and a will
 * runs only once all of it is gone.
 *
 * The log stream stays logfmt: the guard writes its own lines through
 * core/log (event=guard_*), and CMD's stdout and stderr reach dispatchd's
 * log (stderr) only through the guard, one line per event=child_output
 * line (stream=stdout|stderr, line="..."; a line longer than 4 KiB is cut
 * into pieces marked partial=true). */
#include "child/child.h"
#include "child/will.h"
#include "child/will_proc.h"
#include "proc/proc.h" /* dd_proc_find (proc.c, the /proc helpers) */

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* What the guard knows while it runs: its logger, CMD's output pipes. */
typedef struct dd_guard_out {
    int fd; /* read end, -1 once at end-of-file */
    const char *stream;
    size_t len;
    char buf[4096];
} dd_guard_out;

typedef struct dd_guard {
    dd_log *log;
    pid_t cmd;
    dd_guard_out out[2];
    int will_fd;      /* the last will (fd 4), or -1 */
    int hand_fd;      /* the host's will process (fd 5), or -1: run it ourselves */
    int live_fd;      /* the deadline pipe (fd 3), or -1 */
    int parent_fd;    /* a pidfd of dispatchd (readable once it has wholly exited), or -1 */
    bool parent_gone; /* the stop is for dispatchd's death: the will runs after it */
    bool leftovers;   /* something CMD started outlived the KILL: no will */
} dd_guard;

static void dd_guard_kill_rest(pid_t self, int sig)
{
    /* Everyone in our group but us: kill(-self) would also hit the guard,
     * and a KILL to ourselves would hide CMD's exit status from dispatchd.
     * A scan of all of /proc: only where kill(0) and the check below cannot
     * do (a KILL while CMD still runs). */
    pid_t pids[256];
    int n = dd_proc_find(NULL, self, pids, 256); /* never lists the caller */
    for (int i = 0; i < n; i++)
        kill(pids[i], sig);
}

/* TERM to CMD's whole group: kill(0) reaches the guard too, where TERM is
 * blocked and lands on the signalfd, read and dropped while it stops. No
 * scan of /proc: a thousand guards stopping at once (dispatchd killed on a
 * host with a thousand dispatchers) each read every process's stat twice
 * with it, and the load went to 200 on 2 cores (docs/scale.md). */
static void dd_guard_term_group(void)
{
    kill(0, SIGTERM);
}

/* KILLs every child of ours (our children cannot be reaped by anyone else,
 * so their pids cannot have been reused). */
static void dd_guard_kill_children(pid_t self)
{
    char path[64], buf[16384];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)self, (int)self);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *p = buf; *p;) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 0)
            kill((pid_t)pid, SIGKILL);
        p = end;
        while (*p == ' ' || *p == '\n')
            p++;
    }
}

/* KILL to everything CMD left once CMD has been reaped: what is still in
 * its group, and what left the group (setsid: a daemonized helper). The
 * guard is a child subreaper (PR_SET_CHILD_SUBREAPER): every descendant of
 * CMD whose parent died became our child, so with no child left nothing of
 * CMD is left, and the /proc scan runs only when something is. A killed
 * child's own children become ours in turn: one round per generation, for
 * at most a second. False when something survived (a process stuck in the
 * kernel): nothing may then say that CMD has stopped. */
static bool dd_guard_kill_leftovers(pid_t self)
{
    for (int round = 0; round < 50; round++) {
        int st;
        pid_t r;
        while ((r = waitpid(-1, &st, WNOHANG)) > 0) /* the dead: reaped */
            ;
        if (r < 0 && errno == ECHILD)
            return true;
        if (round == 0)
            dd_guard_kill_rest(self, SIGKILL); /* the group, children's children too */
        dd_guard_kill_children(self);
        struct pollfd none;
        poll(&none, 0, 20);
    }
    return false;
}

static void dd_guard_drain_signals(int sfd)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
}

static long long dd_guard_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts); /* the clock of the deadlines */
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000LL;
}

static int dd_guard_status(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* One logfmt line per line of CMD's output (n bytes of o->buf). */
static void dd_guard_emit(dd_guard *g, dd_guard_out *o, size_t n, bool partial)
{
    char line[sizeof(o->buf) + 1];
    size_t k = n;
    if (k > 0 && o->buf[k - 1] == '\r')
        k--;
    for (size_t i = 0; i < k; i++) /* a NUL would end the value early */
        line[i] = o->buf[i] ? o->buf[i] : '?';
    line[k] = '\0';
    if (partial)
        dd_info(g->log, "child_output", "pid=%d stream=%s partial=true line=%s", (int)g->cmd,
                o->stream, line);
    else
        dd_info(g->log, "child_output", "pid=%d stream=%s line=%s", (int)g->cmd, o->stream,
                line);
}

/* Reads what CMD wrote on o (non-blocking) and logs every complete line;
 * at end-of-file also the rest. */
static void dd_guard_relay(dd_guard *g, dd_guard_out *o)
{
    while (o->fd >= 0) {
        ssize_t r = read(o->fd, o->buf + o->len, sizeof(o->buf) - o->len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) { /* end of file (or an error: the same to us) */
            if (o->len > 0)
                dd_guard_emit(g, o, o->len, true);
            o->len = 0;
            close(o->fd);
            o->fd = -1;
            return;
        }
        o->len += (size_t)r;
        char *nl;
        while ((nl = memchr(o->buf, '\n', o->len)) != NULL) {
            size_t k = (size_t)(nl - o->buf);
            dd_guard_emit(g, o, k, false);
            memmove(o->buf, nl + 1, o->len - k - 1);
            o->len -= k + 1;
        }
        if (o->len == sizeof(o->buf)) { /* a very long line: in pieces */
            dd_guard_emit(g, o, o->len, true);
            o->len = 0;
        }
    }
}

/* Polls sfd and CMD's output until timeout_ms (-1: forever) or a signal or
 * (with extra >= 0) extra is readable. Returns poll's result; revents of
 * sfd and extra in *sig_ready / *extra_ready. */
static int dd_guard_poll(dd_guard *g, int sfd, int extra, int timeout_ms, bool *sig_ready,
                         bool *extra_ready)
{
    struct pollfd p[4];
    int n = 0;
    p[n++] = (struct pollfd){sfd, POLLIN, 0};
    int ix = -1;
    if (extra >= 0) {
        ix = n;
        p[n++] = (struct pollfd){extra, POLLIN, 0};
    }
    int io = n;
    for (int i = 0; i < 2; i++)
        if (g->out[i].fd >= 0)
            p[n++] = (struct pollfd){g->out[i].fd, POLLIN, 0};
    int rc = poll(p, (nfds_t)n, timeout_ms);
    *sig_ready = rc > 0 && p[0].revents;
    if (extra_ready)
        *extra_ready = rc > 0 && ix >= 0 && p[ix].revents;
    if (rc > 0 && n > io)
        for (int i = 0; i < 2; i++)
            dd_guard_relay(g, &g->out[i]);
    return rc;
}

/* Waits until end (boot ms) for CMD to exit (SIGCHLD on sfd), relaying its
 * output meanwhile. True when it did. */
static bool dd_guard_wait_cmd(dd_guard *g, int sfd, long long end, int *status)
{
    for (;;) {
        if (waitpid(g->cmd, status, WNOHANG) == g->cmd)
            return true;
        long long left = end - dd_guard_now_ms();
        if (left <= 0)
            return false;
        bool sig = false;
        dd_guard_poll(g, sfd, -1, (int)left, &sig, NULL);
        if (sig)
            dd_guard_drain_signals(sfd);
    }
}

/* Reads the will dispatchd left on fd 4 (written whole and closed before we
 * started, so this ends at end-of-file at once; bounded anyway). */
static char *dd_guard_read_will(int fd, size_t *len)
{
    dd_buf b = DD_BUF_INIT;
    char chunk[4096];
    long long end = dd_guard_now_ms() + 1000;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r > 0) {
            dd_buf_append(&b, chunk, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN && dd_guard_now_ms() < end) {
            struct pollfd p = {fd, POLLIN, 0};
            poll(&p, 1, 100);
            continue;
        }
        break;
    }
    explicit_bzero(chunk, sizeof(chunk));
    *len = b.len;
    return b.data; /* NULL when empty */
}

/* dispatchd died and CMD is confirmed stopped: release the record (fenced)
 * and tell the standbys, as dispatchd's own release would have. */
/* Waits (at most timeout_ms) until dispatchd has wholly exited, its files
 * closed. The parent-death signal comes when the thread that started us
 * exits, which can be before the others (libuv's workers), and even the end
 * of the deadline pipe can be seen while the dying process is still
 * releasing its other files. Until then dispatchd still holds its end of the
 * will process's pipe: a hand-over would not see EPIPE when no will process
 * is left, and its frame would die with dispatchd's copy of the pipe (seen
 * under load: the test's "no will process" case). A pidfd of dispatchd is
 * readable only once the whole process has exited; without one (an old
 * kernel), the end of the deadline pipe is the best sign there is. */
static void dd_guard_wait_files_closed(dd_guard *g, int timeout_ms)
{
    long long end = dd_guard_now_ms() + timeout_ms;
    if (g->parent_fd >= 0) {
        for (int i = 0; i < 1000; i++) { /* bounded by the clock too */
            long long left = end - dd_guard_now_ms();
            struct pollfd p = {g->parent_fd, POLLIN, 0};
            int rc = poll(&p, 1, left <= 0 ? 0 : (int)left);
            if (rc != 0 && !(rc < 0 && errno == EINTR))
                return; /* exited (or the pidfd cannot tell: go on) */
            if (left <= 0)
                return;
        }
        return;
    }
    if (g->live_fd < 0)
        return;
    char buf[64];
    for (int i = 0; i < 10000; i++) { /* bounded by the clock too */
        ssize_t r = read(g->live_fd, buf, sizeof(buf));
        if (r == 0)
            return; /* every copy of the write end is closed */
        if (r > 0 || errno == EINTR)
            continue; /* a last deadline, or a signal: read on */
        long long left = end - dd_guard_now_ms();
        if (errno != EAGAIN || left <= 0)
            return;
        struct pollfd p = {g->live_fd, POLLIN, 0};
        poll(&p, 1, (int)(left > 100 ? 100 : left));
    }
}

static void dd_guard_will(dd_guard *g)
{
    size_t len = 0;
    char *data = dd_guard_read_will(g->will_fd, &len);
    close(g->will_fd);
    g->will_fd = -1;
    dd_will w;
    if (!data || dd_will_unpack(data, len, &w) < 0) {
        dd_warn(g->log, "will_failed", "error=%s", "no readable will from dispatchd");
        if (data) {
            explicit_bzero(data, len);
            free(data);
        }
        return;
    }
    if (w.password)
        dd_log_add_secret(g->log, w.password);
    long long t0 = dd_guard_now_ms();
    if (g->hand_fd >= 0) {
        dd_guard_wait_files_closed(g, 2000);
        /* one connection for every guard of the host, not one each */
        int hrc = dd_will_hand_over(g->hand_fd, data, len, 3000);
        close(g->hand_fd);
        g->hand_fd = -1;
        if (hrc == 0) {
            dd_info(g->log, "will_handed", "run_id=%s epoch=%lld took_ms=%lld note=%s", w.run_id,
                    (long long)w.epoch, dd_guard_now_ms() - t0,
                    "to the host's will process (component=will says what became of it)");
            explicit_bzero(data, len);
            free(data);
            return;
        }
        dd_info(g->log, "will_hand_over_failed", "run_id=%s epoch=%lld error=%s note=%s",
                w.run_id, (long long)w.epoch, dd_strerror(hrc), "running it here instead");
        t0 = dd_guard_now_ms();
    }
    char holder[200], err[300] = "";
    int rc = dd_will_run(&w, g->log, 5000, holder, sizeof(holder), err, sizeof(err));
    long long took = dd_guard_now_ms() - t0;
    if (rc == 0)
        dd_info(g->log, "will_released", "run_id=%s epoch=%lld mode=%s took_ms=%lld wall_us=%lld",
                w.run_id, (long long)w.epoch, w.expire ? "expire" : "delete", took,
                (long long)dd_wall_us());
    else if (rc == DD_EFENCED)
        dd_info(g->log, "will_fenced", "run_id=%s epoch=%lld holder=%s took_ms=%lld note=%s",
                w.run_id, (long long)w.epoch, *holder ? holder : "none", took,
                "a newer owner holds the record: left alone");
    else
        dd_warn(g->log, "will_failed", "run_id=%s epoch=%lld error=%s took_ms=%lld note=%s",
                w.run_id, (long long)w.epoch, err, took,
                "the standbys take over at the stale threshold instead");
    explicit_bzero(data, len);
    free(data);
}

/* CMD has ended: the rest of its output (bounded: its group is killed, so
 * the pipes reach end-of-file at once unless something escaped the group),
 * then one line with its real status, and that status as ours. */
static int dd_guard_finish(dd_guard *g, int sfd, int status)
{
    long long end = dd_guard_now_ms() + 500;
    while ((g->out[0].fd >= 0 || g->out[1].fd >= 0) && dd_guard_now_ms() < end) {
        bool sig = false;
        dd_guard_poll(g, sfd, -1, (int)(end - dd_guard_now_ms()), &sig, NULL);
        if (sig) /* our own TERM from dd_guard_term_group, a SIGCHLD: nothing to do */
            dd_guard_drain_signals(sfd);
    }
    for (int i = 0; i < 2; i++) {
        if (g->out[i].fd >= 0) { /* held open by an escaped process: stop listening */
            if (g->out[i].len > 0)
                dd_guard_emit(g, &g->out[i], g->out[i].len, true);
            close(g->out[i].fd);
            g->out[i].fd = -1;
        }
    }
    int code = dd_guard_status(status);
    dd_info(g->log, "guard_command_exited", "pid=%d exit_status=%d signal=%d",
            (int)g->cmd, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (g->parent_gone && g->will_fd >= 0 && g->leftovers)
        dd_warn(g->log, "will_skipped", "reason=%s note=%s",
                "processes the command started were still alive a second after their KILL",
                "the standbys take over at the stale threshold instead");
    else if (g->parent_gone && g->will_fd >= 0)
        dd_guard_will(g); /* CMD and all it started are gone: nothing acts any more */
    dd_log_free(g->log);
    return code;
}

/* TERM, then KILL at kill_at (boot ms); returns CMD's own exit status. */
static int dd_guard_stop_group(dd_guard *g, pid_t self, int sfd, long long kill_at,
                               const char *why)
{
    int status = 0;
    dd_info(g->log, "guard_stopping", "pid=%d signal=TERM kill_in_ms=%lld reason=%s",
            (int)g->cmd, kill_at - dd_guard_now_ms(), why);
    dd_guard_term_group();
    if (!dd_guard_wait_cmd(g, sfd, kill_at, &status)) {
        dd_warn(g->log, "guard_kill", "pid=%d signal=KILL reason=%s", (int)g->cmd,
                "did not exit after TERM");
        dd_guard_kill_rest(self, SIGKILL);
        waitpid(g->cmd, &status, 0);
    }
    g->leftovers = !dd_guard_kill_leftovers(self);
    return dd_guard_finish(g, sfd, status);
}

/* The guard's logger (dd_child_helper_log) with the dispatcher it guards. */
static dd_log *dd_guard_log_new(void)
{
    dd_log *log = dd_child_helper_log("guard");
    const char *wid = getenv("DISPATCHD_WORKFLOW_ID");
    if (wid && *wid)
        dd_log_add_field(log, "workflow_id", wid);
    return log;
}

int dd_guard_main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr,
                "usage: dispatchd __guard PPID:GRACE_MS[:DEADLINE_MS:LEAD_MS[:WILL]] -- CMD "
                "ARGS...\n(WILL: 0 none, 1 the will on fd 4, 2 also the host's will process on "
                "fd 5)\n");
        return 2;
    }
    long long v[5] = {0, 10000, 0, 0, 0};
    int nv = 0;
    for (const char *p = argv[1]; p && nv < 5; nv++) {
        v[nv] = atoll(p);
        p = strchr(p, ':');
        p = p ? p + 1 : NULL;
    }
    pid_t want_parent = (pid_t)v[0];
    long long grace_ms = v[1];
    long long deadline = nv >= 4 ? v[2] : 0; /* 0: no acting deadline */
    long long lead_ms = nv >= 4 ? v[3] : 0;
    int livefd = deadline > 0 ? 3 : -1;
    int willfd = livefd >= 0 && nv >= 5 && (v[4] == 1 || v[4] == 2) ? 4 : -1;
    int handfd = willfd >= 0 && v[4] == 2 ? 5 : -1;
    /* Only 0-2, the deadline pipe, the will and the will process's pipe
     * are ours to keep. */
    dd_child_close_from(handfd >= 0 ? 6 : willfd >= 0 ? 5 : livefd >= 0 ? 4 : 3);
    if (livefd >= 0) {
        fcntl(livefd, F_SETFD, FD_CLOEXEC); /* CMD does not get it */
        fcntl(livefd, F_SETFL, O_NONBLOCK);
    }
    if (willfd >= 0) {
        fcntl(willfd, F_SETFD, FD_CLOEXEC);
        fcntl(willfd, F_SETFL, O_NONBLOCK);
    }
    if (handfd >= 0) { /* a whole frame or nothing (will_proc.h) */
        fcntl(handfd, F_SETFD, FD_CLOEXEC);
        fcntl(handfd, F_SETFL, O_NONBLOCK);
    }
    /* A log reader that went away (dispatchd's stderr was a pipe) must
     * not kill the guard on its next line: CMD would be left unguarded. */
    signal(SIGPIPE, SIG_IGN);
    dd_guard g = {.log = dd_guard_log_new(),
                  .out = {{.fd = -1, .stream = "stdout"}, {.fd = -1, .stream = "stderr"}},
                  .will_fd = willfd,
                  .hand_fd = handfd,
                  .live_fd = livefd,
                  .parent_fd = -1};

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGUSR2); /* our parent died (below) */
    sigprocmask(SIG_BLOCK, &set, &old);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        dd_error(g.log, "guard_failed", "step=signalfd error=%s", strerror(errno));
        dd_log_free(g.log);
        return 1;
    }
    prctl(PR_SET_PDEATHSIG, SIGUSR2);
    /* CMD's orphans become ours (dd_guard_kill_leftovers) */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const char *stop = getppid() != want_parent ? "dispatchd is gone (its parent died)" : NULL;
    /* dispatchd is our parent and alive here, so its pid is not reused:
     * the pidfd names it (close-on-exec: CMD does not get it) */
    if (!stop && handfd >= 0)
        g.parent_fd = (int)syscall(SYS_pidfd_open, want_parent, 0);
    if (!stop && deadline > 0 && dd_guard_now_ms() >= deadline - lead_ms)
        stop = "acting deadline already reached";

    /* CMD's stdout and stderr come to us, to be logged line by line. */
    int pout[2] = {-1, -1}, perr[2] = {-1, -1};
    if (!stop && (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0)) {
        dd_error(g.log, "guard_failed", "step=pipe error=%s", strerror(errno));
        dd_log_free(g.log);
        return 1;
    }
    pid_t self = getpid();
    pid_t cmd = stop ? 0 : fork();
    if (cmd < 0) {
        dd_error(g.log, "guard_failed", "step=fork error=%s", strerror(errno));
        dd_log_free(g.log);
        return 1;
    }
    if (cmd == 0 && !stop) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        signal(SIGPIPE, SIG_DFL); /* an ignored signal would survive the exec */
        prctl(PR_SET_PDEATHSIG, 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        dd_child_close_from(3);
        execvp(argv[3], argv + 3);
        /* our stderr is the guard's pipe: this becomes a child_output line */
        fprintf(stderr, "dispatchd guard: cannot run '%s': %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    if (stop) { /* CMD never ran */
        dd_warn(g.log, "guard_not_starting", "reason=%s", stop);
        dd_log_free(g.log);
        return 128 + SIGTERM;
    }
    g.cmd = cmd;
    close(pout[1]);
    close(perr[1]);
    g.out[0].fd = pout[0];
    g.out[1].fd = perr[0];
    fcntl(pout[0], F_SETFL, O_NONBLOCK);
    fcntl(perr[0], F_SETFL, O_NONBLOCK);
    unsigned char rec[8];
    size_t have = 0;
    for (;;) {
        long long now = dd_guard_now_ms();
        if (stop) {
            long long kill_at = now + grace_ms;
            if (deadline > 0 && deadline < kill_at)
                kill_at = deadline;
            return dd_guard_stop_group(&g, self, sfd, kill_at, stop);
        }
        int timeout = -1;
        if (livefd >= 0) {
            long long left = deadline - lead_ms - now;
            timeout = left <= 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
        }
        bool sig = false, live = false;
        int n = dd_guard_poll(&g, sfd, livefd, timeout, &sig, &live);
        if (n < 0 && errno != EINTR)
            stop = "poll failed";
        if (n == 0 && livefd >= 0 && dd_guard_now_ms() >= deadline - lead_ms) {
            stop = "no heartbeat landed in time: acting deadline reached";
            continue;
        }
        if (n > 0 && livefd >= 0 && live) {
            for (;;) {
                ssize_t r = read(livefd, rec + have, sizeof(rec) - have);
                if (r > 0) {
                    have += (size_t)r;
                    if (have == sizeof(rec)) {
                        int64_t d;
                        memcpy(&d, rec, sizeof(d));
                        deadline = d; /* dispatchd's word: it only moves forward */
                        have = 0;
                    }
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    stop = "the deadline pipe from dispatchd was closed: dispatchd exited or "
                           "died";
                    g.parent_gone = true;
                }
                break;
            }
        }
        if (n > 0 && sig) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                /* The parent-death signal is sent by the kernel as from the
                 * dying dispatchd (SI_USER, its pid). CMD is in our group
                 * and can send us a SIGUSR2 too: that must not pass for
                 * dispatchd's death, or its will would run while dispatchd
                 * lives (and no one can forge SI_USER with another pid). */
                bool death = si.ssi_signo == SIGUSR2 && si.ssi_code == SI_USER &&
                             (pid_t)si.ssi_pid == want_parent;
                if (death || getppid() != want_parent) {
                    stop = "dispatchd is gone (its parent died)";
                    g.parent_gone = true;
                }
                else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT ||
                          si.ssi_signo == SIGHUP) &&
                         (!stop || strncmp(stop, "dispatchd", 9)))
                    stop = si.ssi_signo == SIGTERM ? "asked to stop (SIGTERM)"
                           : si.ssi_signo == SIGINT ? "asked to stop (SIGINT)"
                                                    : "asked to stop (SIGHUP)";
            }
            /* CMD, or an orphan of CMD's that we adopted (a subreaper must
             * reap them, or a command that double-forks helpers leaves a
             * zombie for each) */
            int status, st;
            pid_t r;
            bool cmd_ended = false;
            for (int k = 0; k < 4096 && (r = waitpid(-1, &st, WNOHANG)) > 0; k++)
                if (r == cmd) {
                    cmd_ended = true;
                    status = st;
                }
            if (!cmd_ended && waitpid(cmd, &st, WNOHANG) == cmd) { /* past the bound */
                cmd_ended = true;
                status = st;
            }
            if (cmd_ended) {
                /* CMD ended by itself: take any of its leftovers along. */
                g.leftovers = !dd_guard_kill_leftovers(self);
                return dd_guard_finish(&g, sfd, status);
            }
        }
    }
}
