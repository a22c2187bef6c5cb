/* lock.c - flock-based lock files (S5).
 *
 * flock locks belong to the open file description, not the process: a
 * child that inherits the fd keeps the lock after the parent closes its
 * copy or dies, and the kernel drops it when the last holder exits, however
 * it exits. That is exactly "running" for a supervised server. */
#include "proc/proc.h"

#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

int dd_lock_acquire(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int err = errno;
        close(fd);
        return err == EWOULDBLOCK ? DD_EBUSY : -err;
    }
    return fd;
}

bool dd_lock_held(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd); /* releases our probe lock if we got it */
    return held;
}
