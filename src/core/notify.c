/* notify.c - see notify.h. The protocol: sd_notify(3), "NOTIFY_SOCKET". */
#include "core/notify.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

struct dd_notify {
    dd_ctx ctx;
    uv_timer_t watchdog; /* always initialised, so close always has a callback */
    int fd;              /* -1 until the first send */
    struct sockaddr_un addr;
    socklen_t addrlen;   /* 0: NOTIFY_SOCKET unset or unusable */
    char *path;          /* for messages */
    int64_t watchdog_ms;
    bool warned;
    void (*done)(void *);
    void *done_arg;
};

static void dd_notify_warn(dd_notify *n, int code, const char *what)
{
    if (n->warned)
        return; /* once: a supervisor that does not listen is not news every 5 s */
    n->warned = true;
    dd_warn(n->ctx.log, "notify_failed", "socket=%s error=%s what=%s note=%s", n->path,
            dd_strerror(code), what,
            "the daemon keeps running; systemd (Type=notify) will not see READY or "
            "WATCHDOG: check NOTIFY_SOCKET, or use Type=simple");
}

void dd_notify_send(dd_notify *n, const char *msg)
{
    if (!n || n->addrlen == 0)
        return;
    if (n->fd < 0) {
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (n->fd < 0) {
            dd_notify_warn(n, -errno, "socket");
            return;
        }
    }
    /* sendto each time: a socket that appears later is found then */
    if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->addr,
               n->addrlen) < 0) {
        dd_notify_warn(n, -errno, "sendto");
        return;
    }
    dd_debug(n->ctx.log, "notify_sent", "message=%s", msg);
}

static void dd_notify_ping(uv_timer_t *t)
{
    dd_notify_send(t->data, "WATCHDOG=1");
}

/* NOTIFY_SOCKET: "/path" or "@abstract" (a NUL first byte on the wire). */
static void dd_notify_parse_socket(dd_notify *n, const char *v)
{
    size_t len = strlen(v);
    n->path = dd_strdup(v);
    if (len < 2 || (v[0] != '/' && v[0] != '@')) {
        dd_notify_warn(n, DD_EINVAL, "NOTIFY_SOCKET must be an absolute path or @abstract name");
        return;
    }
    if (len >= sizeof(n->addr.sun_path)) {
        dd_notify_warn(n, -ENAMETOOLONG, "NOTIFY_SOCKET longer than a unix socket path");
        return;
    }
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, v, len);
    if (v[0] == '@')
        n->addr.sun_path[0] = '\0';
    /* abstract names are counted, not NUL-terminated; a path includes its NUL */
    n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (v[0] == '/'));
}

int dd_notify_new(const dd_ctx *ctx, dd_notify **out, char *err, size_t errlen)
{
    dd_notify *n = dd_xcalloc(1, sizeof(*n));
    n->ctx = *ctx;
    n->fd = -1;
    uv_timer_init(ctx->loop, &n->watchdog);
    n->watchdog.data = n;
    const char *sock = getenv("NOTIFY_SOCKET");
    if (sock && *sock)
        dd_notify_parse_socket(n, sock);
    const char *usec = getenv("WATCHDOG_USEC");
    const char *wpid = getenv("WATCHDOG_PID");
    if (n->addrlen && usec && *usec) {
        char *end = NULL;
        errno = 0;
        unsigned long long us = strtoull(usec, &end, 10);
        char *pend = NULL;
        long pid = wpid && *wpid ? strtol(wpid, &pend, 10) : 0;
        if (errno || !end || *end || us == 0 || us > UINT64_C(86400000000))
            dd_warn(ctx->log, "watchdog_off", "WATCHDOG_USEC=%s reason=%s", usec,
                    "not a number of microseconds between 1 and a day");
        else if (wpid && *wpid && (!pend || *pend || pid != (long)getpid()))
            dd_info(ctx->log, "watchdog_off", "WATCHDOG_PID=%s reason=%s", wpid,
                    "meant for another process");
        else
            n->watchdog_ms = (int64_t)(us / 2000) > 0 ? (int64_t)(us / 2000) : 1;
    }
    if (n->watchdog_ms > 0) {
        uv_timer_start(&n->watchdog, dd_notify_ping, (uint64_t)n->watchdog_ms,
                       (uint64_t)n->watchdog_ms);
        dd_info(ctx->log, "watchdog_on", "interval_ms=%lld", (long long)n->watchdog_ms);
    }
    /* ours alone: a child command must not speak for this service */
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    *out = n;
    return 0;
}

bool dd_notify_enabled(const dd_notify *n)
{
    return n && n->path;
}

int64_t dd_notify_watchdog_ms(const dd_notify *n)
{
    return n ? n->watchdog_ms : 0;
}

static void dd_notify_closed(uv_handle_t *h)
{
    dd_notify *n = h->data;
    if (n->fd >= 0)
        close(n->fd);
    void (*done)(void *) = n->done;
    void *arg = n->done_arg;
    free(n->path);
    free(n);
    if (done)
        done(arg);
}

void dd_notify_close(dd_notify *n, void (*done)(void *arg), void *arg)
{
    n->done = done;
    n->done_arg = arg;
    uv_close((uv_handle_t *)&n->watchdog, dd_notify_closed);
}
