/* A program embedding the worker API as a user would: only
 * include/dispatchd.h, linked with libdispatchd.a, libuv and hiredis (the
 * line include/dispatchd.h gives). Built and run by tests/embed.sh. */
#include <dispatchd.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the header asks */
    char err[256] = "";
    dispatchd_worker_opts o = {.redis_url = "redis://127.0.0.1:1/0",
                               .project = "p",
                               .queue = "q",
                               .server_id = ""};
    volatile sig_atomic_t stop = 1;
    int rc = dispatchd_worker_run(&o, &stop, err, sizeof(err));
    printf("rc=%d strerror=%s err=%s\n", rc, dispatchd_strerror(rc), err);
    if (rc != DISPATCHD_EINVAL || strcmp(dispatchd_strerror(rc), "invalid argument") != 0 ||
        !strstr(err, "server id"))
        return 1;
    if (strcmp(dispatchd_strerror(-2), "No such file or directory") != 0) /* -ENOENT */
        return 1;
    return 0;
}
