/* guard.c - `dispatchd __guard PPID:GRACE_MS[:DEADLINE_MS:LEAD_MS] -- CMD
 * ARGS...`, the first process of every owner child command.
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
 * Every stop's KILL comes at the deadline at the latest. Signals are taken
 * through a signalfd and waited for with poll(), so none can slip in
 * between a check and a wait. It exits with CMD's status (128 + signal when
 * CMD died of one). */
#include "proc/proc.h"

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

static void dd_guard_kill_rest(pid_t self, int sig)
{
    /* Everyone in our group but us: kill(-self) would also hit the guard,
     * and a KILL to ourselves would hide CMD's exit status from dispatchd. */
    pid_t pids[256];
    int n = dd_proc_find(NULL, self, pids, 256); /* never lists the caller */
    for (int i = 0; i < n; i++)
        kill(pids[i], sig);
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

/* Closes every fd from lo up: what dispatchd's libraries opened without
 * close-on-exec must not reach CMD. */
static void dd_guard_close_from(int lo)
{
    if (syscall(SYS_close_range, (unsigned)lo, ~0U, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = lo; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close((int)fd);
}

/* Waits until end (boot ms) for CMD to exit (SIGCHLD on sfd). True when it did. */
static bool dd_guard_wait_cmd(int sfd, pid_t cmd, long long end, int *status)
{
    for (;;) {
        if (waitpid(cmd, status, WNOHANG) == cmd)
            return true;
        long long left = end - dd_guard_now_ms();
        if (left <= 0)
            return false;
        struct pollfd p = {sfd, POLLIN, 0};
        if (poll(&p, 1, (int)left) > 0) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                ;
        }
    }
}

/* TERM, then KILL at kill_at (boot ms); returns CMD's own exit status. */
static int dd_guard_stop_group(pid_t self, int sfd, pid_t cmd, long long kill_at,
                               const char *why)
{
    int status = 0;
    fprintf(stderr, "dispatchd guard: stopping the command: %s\n", why);
    dd_guard_kill_rest(self, SIGTERM);
    if (!dd_guard_wait_cmd(sfd, cmd, kill_at, &status)) {
        dd_guard_kill_rest(self, SIGKILL);
        waitpid(cmd, &status, 0);
    }
    dd_guard_kill_rest(self, SIGKILL); /* its leftovers */
    return dd_guard_status(status);
}

int dd_guard_main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr,
                "usage: dispatchd __guard PPID:GRACE_MS[:DEADLINE_MS:LEAD_MS] -- CMD ARGS...\n");
        return 2;
    }
    long long v[4] = {0, 10000, 0, 0};
    int nv = 0;
    for (const char *p = argv[1]; p && nv < 4; nv++) {
        v[nv] = atoll(p);
        p = strchr(p, ':');
        p = p ? p + 1 : NULL;
    }
    pid_t want_parent = (pid_t)v[0];
    long long grace_ms = v[1];
    long long deadline = nv >= 4 ? v[2] : 0; /* 0: no acting deadline */
    long long lead_ms = nv >= 4 ? v[3] : 0;
    int livefd = deadline > 0 ? 3 : -1;
    /* Only 0-2 and the deadline pipe are ours to keep. */
    dd_guard_close_from(livefd >= 0 ? 4 : 3);
    if (livefd >= 0) {
        fcntl(livefd, F_SETFD, FD_CLOEXEC); /* CMD does not get it */
        fcntl(livefd, F_SETFL, O_NONBLOCK);
    }

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, &old);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        perror("dispatchd guard: signalfd");
        return 1;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    const char *stop = getppid() != want_parent ? "dispatchd is gone" : NULL;
    if (!stop && deadline > 0 && dd_guard_now_ms() >= deadline - lead_ms)
        stop = "acting deadline already reached";

    pid_t self = getpid();
    pid_t cmd = stop ? 0 : fork();
    if (cmd < 0) {
        perror("dispatchd guard: fork");
        return 1;
    }
    if (cmd == 0 && !stop) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        prctl(PR_SET_PDEATHSIG, 0);
        dd_guard_close_from(3);
        execvp(argv[3], argv + 3);
        fprintf(stderr, "dispatchd guard: cannot run '%s': %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    if (stop) { /* CMD never ran */
        fprintf(stderr, "dispatchd guard: not starting the command: %s\n", stop);
        return 128 + SIGTERM;
    }
    unsigned char rec[8];
    size_t have = 0;
    for (;;) {
        long long now = dd_guard_now_ms();
        if (stop) {
            long long kill_at = now + grace_ms;
            if (deadline > 0 && deadline < kill_at)
                kill_at = deadline;
            return dd_guard_stop_group(self, sfd, cmd, kill_at, stop);
        }
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {livefd, POLLIN, 0}};
        int timeout = -1;
        if (livefd >= 0) {
            long long left = deadline - lead_ms - now;
            timeout = left <= 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
        }
        int n = poll(p, livefd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            stop = "poll failed";
        if (n == 0 && livefd >= 0 && dd_guard_now_ms() >= deadline - lead_ms) {
            stop = "no heartbeat landed in time: acting deadline reached";
            continue;
        }
        if (n > 0 && livefd >= 0 && p[1].revents) {
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
                if (r == 0 || (errno != EAGAIN && errno != EINTR))
                    stop = "dispatchd closed the deadline pipe";
                break;
            }
        }
        if (n > 0 && p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo != SIGCHLD)
                    stop = getppid() != want_parent ? "dispatchd is gone" : "asked to stop";
            }
            int status;
            if (waitpid(cmd, &status, WNOHANG) == cmd) {
                /* CMD ended by itself: take any of its leftovers along. */
                dd_guard_kill_rest(self, SIGKILL);
                return dd_guard_status(status);
            }
        }
    }
}
