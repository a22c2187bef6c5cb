/* guard.c - `dispatchd __guard PPID GRACE_MS -- CMD ARGS...`, the first
 * process of every owner child command.
 *
 * Why: the child command must act only while its dispatchd owns the
 * dispatcher. If dispatchd is killed with -9 it cannot stop the command,
 * and a command that outlives its owner is a duplicate dispatcher the
 * moment a standby takes over. The guard asks the kernel for SIGTERM when
 * its parent dies (PR_SET_PDEATHSIG), runs CMD in its own process group
 * (the guard is the group leader), and on TERM - from dispatchd stopping
 * it, or from the kernel because dispatchd died - stops the whole group:
 * TERM, GRACE_MS, KILL. It exits with CMD's status when CMD exits. */
#include "proc/proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t dd_guard_stop;

static void dd_guard_on_term(int sig)
{
    dd_guard_stop = 1;
}

static void dd_guard_kill_rest(pid_t self, int sig)
{
    /* Everyone in our group but us: kill(-self) would also hit the guard,
     * and a KILL to ourselves would hide CMD's exit status from dispatchd. */
    pid_t pids[256];
    int n = dd_proc_find(NULL, self, pids, 256); /* never lists the caller */
    for (int i = 0; i < n; i++)
        kill(pids[i], sig);
}

int dd_guard_main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: dispatchd __guard PPID:GRACE_MS -- CMD ARGS...\n");
        return 2;
    }
    pid_t want_parent = (pid_t)atoi(argv[1]);
    const char *colon = strchr(argv[1], ':');
    long grace_ms = colon ? atol(colon + 1) : 10000;
    struct sigaction sa = {0};
    sa.sa_handler = dd_guard_on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != want_parent) /* died before prctl took effect */
        dd_guard_stop = 1;

    pid_t self = getpid();
    pid_t cmd = fork();
    if (cmd < 0) {
        perror("dispatchd guard: fork");
        return 1;
    }
    if (cmd == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, 0);
        execvp(argv[3], argv + 3);
        fprintf(stderr, "dispatchd guard: cannot run '%s': %s\n", argv[3], strerror(errno));
        _exit(127);
    }
    int status = 0;
    for (;;) {
        pid_t r = waitpid(cmd, &status, 0);
        if (r == cmd)
            break;
        if (r < 0 && errno != EINTR)
            break;
        if (dd_guard_stop) {
            dd_guard_kill_rest(self, SIGTERM);
            struct timespec step = {0, 20 * 1000 * 1000};
            long waited = 0;
            while (waited < grace_ms && waitpid(cmd, &status, WNOHANG) == 0) {
                nanosleep(&step, NULL);
                waited += 20;
            }
            dd_guard_kill_rest(self, SIGKILL);
            waitpid(cmd, &status, 0);
            return 128 + SIGTERM;
        }
    }
    /* CMD ended by itself: take any of its leftovers along. */
    dd_guard_kill_rest(self, SIGKILL);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
