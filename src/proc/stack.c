/* stack.c - inspect, prepare (idempotent start) and kill one service.
 *
 * These are the synchronous building blocks of `dispatchd stack` and of the
 * start-up of `dispatchd up`; the long-running supervision is in
 * supervisor.c. Blocking waits here are short and bounded. */
#include "proc/proc.h"

#include "core/error.h"
#include "core/log.h"
#include "core/time.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define DD_MAX_VICTIMS 256

static void dd_sleep_ms(int ms)
{
    struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&d, NULL);
}

void dd_stack_token(char *out, size_t len)
{
    unsigned char raw[16];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        uint64_t a = dd_mono_us() ^ ((uint64_t)getpid() << 32), b = (uint64_t)dd_wall_ms();
        memcpy(raw, &a, 8);
        memcpy(raw + 8, &b, 8);
    }
    size_t o = 0;
    for (size_t i = 0; i < sizeof(raw) && o + 3 <= len; i++)
        o += (size_t)snprintf(out + o, len - o, "%02x", raw[i]);
}

void dd_stack_inspect(const dd_service *s, int64_t probe_timeout_ms, dd_health *h)
{
    memset(h, 0, sizeof(*h));
    h->lock_held = dd_lock_held(s->lock_path);
    int rc = dd_status_read(s->status_path, &h->status);
    h->have_status = rc == 0;
    h->status_corrupt = rc == DD_ECORRUPT;
    if (h->have_status) {
        dd_proc_info info;
        h->alive = dd_proc_read(h->status.ident.pid, &info) == 0 && info.state != 'Z';
        h->identity_ok = dd_proc_ident_matches(&h->status.ident);
    }
    if (h->lock_held && h->identity_ok)
        h->responding = dd_probe_run(s->probe_port, s->probe_req, s->probe_expect,
                                     probe_timeout_ms) == 0;
    h->healthy = h->lock_held && h->identity_ok && h->responding;

    if (h->healthy)
        dd_msgf(h->detail, sizeof(h->detail), "healthy");
    else if (h->status_corrupt)
        dd_msgf(h->detail, sizeof(h->detail), "status file '%s' is corrupt%s", s->status_path,
                h->lock_held ? " and the lock is held; run `dispatchd stack stop` to clean up"
                             : "; the next start replaces it");
    else if (!h->lock_held && !h->have_status)
        dd_msgf(h->detail, sizeof(h->detail), "not running");
    else if (!h->lock_held)
        dd_msgf(h->detail, sizeof(h->detail),
                "not running (stale status file of pid %d left by a crash; the next start "
                "cleans it)",
                (int)h->status.ident.pid);
    else if (!h->have_status)
        dd_msgf(h->detail, sizeof(h->detail), "lock held but no status file (starting?)");
    else if (!h->alive)
        dd_msgf(h->detail, sizeof(h->detail),
                "lock held but pid %d is gone (a leftover process holds the lock)",
                (int)h->status.ident.pid);
    else if (!h->identity_ok)
        dd_msgf(h->detail, sizeof(h->detail),
                "pid %d is a different process than the one started (pid reused)",
                (int)h->status.ident.pid);
    else
        dd_msgf(h->detail, sizeof(h->detail), "pid %d is alive but port %d does not answer",
                (int)h->status.ident.pid, s->probe_port);
}

/* Every process that belongs to the service: carries its token, or holds
 * its lock. Our own process is never listed. */
static int dd_stack_victims(const dd_service *s, const char *token, pid_t *out, int n)
{
    int count = 0;
    if (token && *token) {
        int k = dd_proc_find(token, 0, out, n);
        if (k > 0)
            count = k;
    }
    pid_t holders[64];
    int k = dd_proc_holding(s->lock_path, holders, 64);
    for (int i = 0; i < k && count < n; i++) {
        bool dup = false;
        for (int j = 0; j < count && !dup; j++)
            dup = out[j] == holders[i];
        if (!dup)
            out[count++] = holders[i];
    }
    return count;
}

static void dd_stack_signal(pid_t *pids, int n, const dd_status *st, int sig)
{
    /* The whole group first when the leader is provably ours (S1)... */
    if (st && dd_proc_ident_matches(&st->ident))
        kill(-st->ident.pid, sig);
    /* ...then each process found by token or lock, group or not. */
    for (int i = 0; i < n; i++)
        kill(pids[i], sig);
}

int dd_stack_kill(const dd_service *s, const dd_status *st, int64_t timeout_ms, dd_log *log)
{
    pid_t pids[DD_MAX_VICTIMS];
    const char *token = st ? st->token : NULL;
    int n = dd_stack_victims(s, token, pids, DD_MAX_VICTIMS);
    if (n <= 0 && !(st && dd_proc_ident_matches(&st->ident))) {
        unlink(s->status_path);
        return 0;
    }
    dd_info(log, "service_stopping", "service=%s pid=%d processes=%d signal=TERM timeout_ms=%lld",
            s->name, st ? (int)st->ident.pid : 0, n, (long long)timeout_ms);
    dd_stack_signal(pids, n, st, SIGTERM);
    uint64_t start = dd_mono_ms();
    while ((int64_t)(dd_mono_ms() - start) < timeout_ms) {
        n = dd_stack_victims(s, token, pids, DD_MAX_VICTIMS);
        if (n == 0)
            break;
        dd_sleep_ms(20);
    }
    if (n > 0) {
        dd_warn(log, "service_kill", "service=%s processes=%d signal=KILL reason=%s", s->name, n,
                "still running after stop timeout");
        dd_stack_signal(pids, n, st, SIGKILL);
        for (int i = 0; i < 250 && n > 0; i++) { /* bounded: 5 s */
            dd_sleep_ms(20);
            n = dd_stack_victims(s, token, pids, DD_MAX_VICTIMS);
        }
    }
    unlink(s->status_path);
    if (n > 0) {
        dd_error(log, "service_kill_failed", "service=%s processes=%d", s->name, n);
        return DD_ETIMEOUT;
    }
    dd_info(log, "service_stopped", "service=%s elapsed_ms=%llu", s->name,
            (unsigned long long)(dd_mono_ms() - start));
    return 0;
}

int dd_stack_prepare(const dd_service *s, dd_log *log, dd_health *h, char *err, size_t errlen)
{
    uint64_t start = dd_mono_ms();
    uint64_t unidentified_since = 0;
    for (;;) {
        int fd = dd_lock_acquire(s->lock_path);
        if (fd >= 0) {
            /* We hold the lock, so no server of ours is alive. Whatever a
             * status file says is a leftover of a crash; processes that still
             * carry the old token (a grandchild that closed the lock fd) are
             * orphans. Clean both before starting (S3). */
            dd_status old;
            int rc = dd_status_read(s->status_path, &old);
            if (rc == 0 || rc == DD_ECORRUPT) {
                /* every value through its own key: a literal passed as %s
                 * would be quoted (old_pid=23021"" once) */
                dd_info(log, "stale_state_cleanup", "service=%s status_file=%s old_pid=%d corrupt=%s",
                        s->name, s->status_path, rc == 0 ? (int)old.ident.pid : 0,
                        rc == DD_ECORRUPT ? "true" : "false");
                pid_t pids[DD_MAX_VICTIMS];
                int n = rc == 0 ? dd_proc_find(old.token, 0, pids, DD_MAX_VICTIMS) : 0;
                for (int i = 0; i < n; i++) {
                    dd_info(log, "orphan_killed", "service=%s pid=%d", s->name, (int)pids[i]);
                    kill(pids[i], SIGKILL);
                }
                unlink(s->status_path);
            }
            return fd;
        }
        if (fd != DD_EBUSY) {
            dd_msgf(err, errlen, "cannot open lock file '%s': %s", s->lock_path,
                    dd_strerror(fd));
            return fd;
        }
        dd_stack_inspect(s, 1000, h);
        if (h->healthy)
            return DD_ECONFLICT;
        uint64_t now = dd_mono_ms();
        bool orphan = false;
        if (h->identity_ok) {
            /* Alive but not answering: starting, or hung. A supervisor that
             * is alive owns the decision; otherwise give it the start timeout. */
            int64_t age = dd_wall_ms() - h->status.started_ms;
            bool supervised = h->status.supervisor > 0 && kill(h->status.supervisor, 0) == 0;
            if (!supervised && age > s->start_timeout_ms)
                orphan = true;
        } else {
            /* Held by something we cannot identify: a racing starter that has
             * not written its status yet, or a leftover holding the lock. */
            if (!unidentified_since)
                unidentified_since = now;
            else if (now - unidentified_since > 2000)
                orphan = true;
        }
        if (orphan) {
            dd_warn(log, "orphan_cleanup", "service=%s reason=%s", s->name, h->detail);
            dd_stack_kill(s, h->have_status ? &h->status : NULL, 2000, log);
            unidentified_since = 0;
            continue;
        }
        if ((int64_t)(now - start) > s->start_timeout_ms) {
            dd_msgf(err, errlen, "%s: gave up waiting for the other start: %s", s->name,
                    h->detail);
            return DD_ETIMEOUT;
        }
        dd_sleep_ms(50);
    }
}
