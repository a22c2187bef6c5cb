/* guard.c - `dispatchd __guard PPID:GRACE_MS[:LIVE_MS] -- CMD ARGS...`, the
 * first process of every owner child command.
 *
 * Why: the child command must act only while its dispatchd owns the
 * dispatcher and can show the fleet it is alive. The guard runs CMD in its
 * own process group (the guard leads it) and stops the whole group - TERM,
 * GRACE_MS, KILL - when any of these happens:
 *  - dispatchd asks (TERM to the group);
 *  - dispatchd dies, even by kill -9 (PR_SET_PDEATHSIG, and the liveness
 *    pipe reads end-of-file);
 *  - dispatchd stops giving signs of life for LIVE_MS: with LIVE_MS, fd 3 is
 *    a pipe on which dispatchd writes a byte after every heartbeat it got
 *    into Redis. A dispatchd that is frozen (SIGSTOP, a hung loop) or cut off
 *    from Redis falls silent, and its child stops before anyone may consider
 *    the owner stale (LIVE_MS is threshold minus interval).
 * Signals are taken through a signalfd and waited for with poll(), so none
 * can slip in between a check and a wait. It exits with CMD's status when CMD
 * exits by itself. */
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

static long dd_guard_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Waits up to ms for CMD to exit (SIGCHLD on sfd). True when it did. */
static bool dd_guard_wait_cmd(int sfd, pid_t cmd, long ms, int *status)
{
    long end = dd_guard_now_ms() + ms;
    for (;;) {
        if (waitpid(cmd, status, WNOHANG) == cmd)
            return true;
        long left = end - dd_guard_now_ms();
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

static int dd_guard_stop_group(pid_t self, int sfd, pid_t cmd, long grace_ms, const char *why)
{
    int status = 0;
    fprintf(stderr, "dispatchd guard: stopping the command: %s\n", why);
    dd_guard_kill_rest(self, SIGTERM);
    if (!dd_guard_wait_cmd(sfd, cmd, grace_ms, &status)) {
        dd_guard_kill_rest(self, SIGKILL);
        waitpid(cmd, &status, 0);
    }
    dd_guard_kill_rest(self, SIGKILL); /* its leftovers */
    return 128 + SIGTERM;
}

int dd_guard_main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: dispatchd __guard PPID:GRACE_MS[:LIVE_MS] -- CMD ARGS...\n");
        return 2;
    }
    pid_t want_parent = (pid_t)atol(argv[1]);
    const char *p1 = strchr(argv[1], ':');
    long grace_ms = p1 ? atol(p1 + 1) : 10000;
    const char *p2 = p1 ? strchr(p1 + 1, ':') : NULL;
    long live_ms = p2 ? atol(p2 + 1) : 0;
    int livefd = live_ms > 0 ? 3 : -1;
    if (livefd >= 0)
        fcntl(livefd, F_SETFD, FD_CLOEXEC); /* CMD does not get it */

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

    pid_t self = getpid();
    pid_t cmd = fork();
    if (cmd < 0) {
        perror("dispatchd guard: fork");
        return 1;
    }
    if (cmd == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        prctl(PR_SET_PDEATHSIG, 0);
        execvp(argv[3], argv + 3);
        fprintf(stderr, "dispatchd guard: cannot run '%s': %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    long last_life = dd_guard_now_ms();
    for (;;) {
        if (stop)
            return dd_guard_stop_group(self, sfd, cmd, grace_ms, stop);
        struct pollfd p[2] = {{sfd, POLLIN, 0}, {livefd, POLLIN, 0}};
        int timeout = -1;
        if (livefd >= 0) {
            long left = last_life + live_ms - dd_guard_now_ms();
            timeout = left > 0 ? (int)left : 0;
        }
        int n = poll(p, livefd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            return dd_guard_stop_group(self, sfd, cmd, grace_ms, "poll failed");
        if (n == 0) {
            stop = "no sign of life from dispatchd within the liveness window";
            continue;
        }
        if (livefd >= 0 && p[1].revents) {
            char buf[64];
            ssize_t r = read(livefd, buf, sizeof(buf));
            if (r > 0)
                last_life = dd_guard_now_ms();
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                stop = "dispatchd closed the liveness pipe";
        }
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo != SIGCHLD)
                    stop = "asked to stop";
            }
            int status;
            if (waitpid(cmd, &status, WNOHANG) == cmd) {
                /* CMD ended by itself: take any of its leftovers along. */
                dd_guard_kill_rest(self, SIGKILL);
                if (WIFEXITED(status))
                    return WEXITSTATUS(status);
                return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
            }
        }
    }
}
