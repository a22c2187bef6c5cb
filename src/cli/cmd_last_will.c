/* cmd_last_will.c - `dispatchd last-will`: the last will of a whole dead
 * dispatchd, for systemd's ExecStopPost= (docs/systemd.md).
 *
 * Why: a guard's will (child/will.h) goes out only while the guard lives.
 * Under KillMode=mixed, when dispatchd dies on its own systemd SIGKILLs the
 * rest of the unit at once (nothing is left to wait for in STOP_SIGTERM), so
 * the guards and the will process die before any will goes out and the
 * standbys wait out the stale threshold. ExecStopPost= runs after that, in
 * the unit's (now empty) cgroup: this command then does for every record
 * the dead dispatchd held what its will process does for one (dd_store_let_go:
 * stale at once, fenced by the run id and epoch just read, the handoff flag
 * set, a PUBLISH on dd:released), so a standby takes over in milliseconds.
 *
 * Which records: those whose server_id is the dead dispatchd's, found by
 * listing every record (dd_store_list: the index, then pipelined HGETALLs).
 * Its server id: --server-id / DISPATCHD_SERVER_ID, else the file
 * $RUNTIME_DIRECTORY/server_id that `run` and `up` write at start (daemon.c):
 * the default id has dispatchd's pid in it.
 *
 * Safety: the handoff flag tells the new owner that our child has stopped,
 * so this must never run while anything of the dead dispatchd could still
 * act, nor while dispatchd lives. It refuses unless its own cgroup (v2) and
 * every cgroup below it hold no process but itself: under ExecStopPost= that
 * is exactly "every process of the unit is gone". No flag skips that. */
#include "cli/cli.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/time.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

/* How long Redis may be unreachable before we give up (the threshold path
 * then applies, as without this command). */
#define DD_LW_RETRY_MS 5000
#define DD_LW_RETRY_STEP_MS 200

/* ---- the cgroup check ---------------------------------------------------- */

/* The cgroup v2 mount point (from /proc/self/mountinfo: the unified
 * hierarchy may be /sys/fs/cgroup or, on hybrid hosts, /sys/fs/cgroup/unified). */
static bool dd_lw_cgroup2_mount(dd_buf *out)
{
    FILE *f = fopen("/proc/self/mountinfo", "r");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        /* id parent maj:min root mountpoint opts... - fstype source superopts */
        const char *sep = strstr(line, " - ");
        if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
            continue;
        char root[4096], mp[4096];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, mp) != 2 || strcmp(root, "/") != 0)
            continue;
        dd_buf_puts(out, mp);
        found = true;
    }
    free(line);
    fclose(f);
    return found;
}

/* Our cgroup v2 path ("/system.slice/dispatchd.service"), from /proc/self/cgroup. */
static bool dd_lw_own_cgroup(dd_buf *out)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    ssize_t n;
    while (!found && (n = getline(&line, &cap, f)) > 0) {
        if (strncmp(line, "0::", 3) != 0)
            continue;
        line[strcspn(line, "\n")] = '\0';
        dd_buf_puts(out, line + 3);
        found = true;
    }
    free(line);
    fclose(f);
    return found;
}

/* Appends to others each process in dir (and every cgroup below) but us,
 * as "PID (comm)", and counts them in *n. False if dir cannot be read. */
static bool dd_lw_scan(const char *dir, pid_t self, dd_buf *others, int *n, int depth)
{
    dd_buf p = DD_BUF_INIT;
    dd_buf_printf(&p, "%s/cgroup.procs", dir);
    FILE *f = fopen(dd_buf_str(&p), "r");
    dd_buf_release(&p);
    if (!f)
        return false;
    long pid;
    while (fscanf(f, "%ld", &pid) == 1) {
        if (pid == (long)self)
            continue;
        if (++*n <= 5) {
            char comm[64] = "?";
            dd_buf c = DD_BUF_INIT;
            dd_buf_printf(&c, "/proc/%ld/comm", pid);
            FILE *cf = fopen(dd_buf_str(&c), "r");
            dd_buf_release(&c);
            if (cf) {
                if (fgets(comm, sizeof(comm), cf))
                    comm[strcspn(comm, "\n")] = '\0';
                fclose(cf);
            }
            dd_buf_printf(others, "%s%ld (%s)", *n > 1 ? ", " : "", pid, comm);
        }
    }
    fclose(f);
    if (depth > 32) /* cgroup.max.depth is far less in practice */
        return true;
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool ok = true;
    struct dirent *e;
    while (ok && (e = readdir(d)) != NULL) {
        if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        dd_buf sub = DD_BUF_INIT;
        dd_buf_printf(&sub, "%s/%s", dir, e->d_name);
        ok = dd_lw_scan(dd_buf_str(&sub), self, others, n, depth + 1);
        dd_buf_release(&sub);
    }
    closedir(d);
    return ok;
}

/* 0 when our cgroup (under systemd: the unit's) holds nothing but us;
 * else the exit code after saying why. */
static int dd_lw_check_cgroup(dd_cli *cli)
{
    dd_buf mnt = DD_BUF_INIT, cg = DD_BUF_INIT, dir = DD_BUF_INIT, others = DD_BUF_INIT;
    int code = 0;
    if (!dd_lw_cgroup2_mount(&mnt) || !dd_lw_own_cgroup(&cg)) {
        code = dd_cli_refuse(cli, "last-will: cannot check that dispatchd's processes are all "
                                  "gone: no cgroup v2 hierarchy here (/proc/self/mountinfo, "
                                  "/proc/self/cgroup); it runs only as ExecStopPost= of the "
                                  "dispatchd unit on a host with cgroup v2 (or hybrid)");
        goto out;
    }
    /* With Delegate=, systemd runs control commands in "<unit>/.control":
     * the unit is the parent then. */
    const char *path = dd_buf_str(&cg);
    const char *base = strrchr(path, '/');
    size_t len = strlen(path);
    if (base && !strcmp(base + 1, ".control"))
        len = (size_t)(base - path);
    dd_buf_printf(&dir, "%s%.*s", dd_buf_str(&mnt), (int)len, path);
    if (len <= 1) {
        code = dd_cli_fail(cli, "last-will: refusing: this runs in the root cgroup, where every "
                                "process of the host is; run it as ExecStopPost= of the "
                                "dispatchd unit (systemd runs it once the unit's processes "
                                "are all gone)");
        goto out;
    }
    int n = 0;
    if (!dd_lw_scan(dd_buf_str(&dir), getpid(), &others, &n, 0)) {
        code = dd_cli_refuse(cli, "last-will: cannot read the processes of cgroup %s (%s): "
                                  "cannot check that dispatchd's processes are all gone",
                             dd_buf_str(&dir), strerror(errno));
        goto out;
    }
    if (n > 0)
        code = dd_cli_fail(cli, "last-will: refusing: other processes are still in cgroup %.*s: "
                                "%s%s; the dispatchd they belong to may still act. Run it as "
                                "ExecStopPost= of the dispatchd unit (systemd runs it once the "
                                "unit's processes are all gone)",
                           (int)len, path, dd_buf_str(&others), n > 5 ? ", ..." : "");
out:
    dd_buf_release(&mnt);
    dd_buf_release(&cg);
    dd_buf_release(&dir);
    dd_buf_release(&others);
    return code;
}

/* ---- whose records ------------------------------------------------------- */

/* --server-id / DISPATCHD_SERVER_ID, else $RUNTIME_DIRECTORY/server_id
 * into *id (heap). 0 found, 1 no file (dispatchd never got as far as
 * writing it: it owned nothing), else an exit code after saying why. */
static int dd_lw_server_id(dd_cli *cli, char **id, dd_buf *from)
{
    if (cli->cfg.server_id && *cli->cfg.server_id) {
        *id = dd_strdup(cli->cfg.server_id);
        dd_buf_puts(from, "configured");
        return 0;
    }
    const char *rd = getenv("RUNTIME_DIRECTORY");
    if (!rd || !*rd)
        return dd_cli_usage_error(cli, "last-will: whose records? Set --server-id (or "
                                       "DISPATCHD_SERVER_ID), or run it as ExecStopPost= of a unit "
                                       "with RuntimeDirectory= ($RUNTIME_DIRECTORY/server_id is "
                                       "where `dispatchd run` writes its server id)");
    dd_buf_printf(from, "%.*s/server_id", (int)strcspn(rd, ":"), rd);
    FILE *f = fopen(dd_buf_str(from), "r");
    if (!f) {
        if (errno == ENOENT)
            return 1;
        return dd_cli_fail(cli, "last-will: cannot read %s: %s", dd_buf_str(from),
                           strerror(errno));
    }
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (!buf[0])
        return dd_cli_fail(cli, "last-will: %s is empty; pass --server-id", dd_buf_str(from));
    *id = dd_strdup(buf);
    return 0;
}

/* ---- the releases ---------------------------------------------------------- */

typedef struct {
    char *workflow_id, *run_id, *first_run_id;
    int64_t epoch, ttl_ms;
    int status; /* 1: not answered yet */
    bool done;
    char holder[200];
} dd_lw_rec;

typedef struct {
    dd_cli *cli;
    uv_loop_t loop;
    dd_store *s;
    const char *server_id;
    bool listed;
    int list_status;
    dd_lw_rec *recs;
    size_t n;
    int already; /* released by a will already (hb_ms 0) */
    int malformed;
} dd_lw;

static void dd_lw_listed(int st, const dd_store_hb_list *l, void *arg)
{
    dd_lw *w = arg;
    w->listed = true;
    w->list_status = st;
    if (st < 0)
        return;
    w->recs = l->n ? dd_xcalloc(l->n, sizeof(*w->recs)) : NULL;
    w->n = 0;
    for (size_t i = 0; i < l->n; i++) {
        const dd_store_hb *h = &l->items[i];
        if (!h->server_id || strcmp(h->server_id, w->server_id) != 0)
            continue;
        if (h->malformed || !h->run_id || h->epoch <= 0) {
            dd_warn(w->cli->log, "last_will_skipped", "workflow_id=%s reason=%s", h->workflow_id,
                    h->problem ? h->problem : "malformed record");
            w->malformed++;
            continue;
        }
        if (h->hb_ms == DD_STORE_HB_RELEASED) {
            dd_info(w->cli->log, "last_will_already_released", "workflow_id=%s run_id=%s epoch=%lld",
                    h->workflow_id, h->run_id, (long long)h->epoch);
            w->already++;
            continue;
        }
        dd_lw_rec *r = &w->recs[w->n++];
        r->workflow_id = dd_strdup(h->workflow_id);
        r->run_id = dd_strdup(h->run_id);
        r->first_run_id = h->first_run_id && *h->first_run_id ? dd_strdup(h->first_run_id) : NULL;
        r->epoch = h->epoch;
        r->ttl_ms = h->ttl_ms;
        r->status = 1;
    }
}

static void dd_lw_answered(int st, const dd_store_owner *res, void *arg)
{
    dd_lw_rec *r = arg;
    r->status = st;
    if (st == DD_EFENCED && res)
        snprintf(r->holder, sizeof(r->holder), "%s", res->server_id ? res->server_id : "");
}

static bool dd_lw_retryable(int st)
{
    return st == DD_EUNAVAIL || st == DD_ETIMEOUT || st == DD_EBUSY;
}

static void dd_lw_timer_fired(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop for ms (a plain wait between attempts). */
static void dd_lw_wait(dd_lw *w, uint64_t ms)
{
    uv_timer_t t;
    bool fired = false;
    uv_timer_init(&w->loop, &t);
    t.data = &fired;
    uv_timer_start(&t, dd_lw_timer_fired, ms, 0);
    while (!fired && uv_run(&w->loop, UV_RUN_ONCE))
        ;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
}

int dd_cmd_last_will(dd_cli *cli)
{
    if (cli->npos > 0)
        return dd_cli_usage_error(cli, "last-will takes no arguments (got '%s')", cli->pos[0]);
    /* first: nothing of the dead dispatchd may act any more */
    int code = dd_lw_check_cgroup(cli);
    if (code)
        return code;
    char *id = NULL;
    dd_buf from = DD_BUF_INIT;
    code = dd_lw_server_id(cli, &id, &from);
    if (code == 1) {
        dd_info(cli->log, "last_will_done",
                "released=0 fenced=0 failed=0 already=0 note=%s path=%s",
                "no server id file: dispatchd did not get as far as owning anything",
                dd_buf_str(&from));
        dd_buf_release(&from);
        return 0;
    }
    if (code) {
        dd_buf_release(&from);
        return code;
    }
    dd_lw w = {.cli = cli, .server_id = id};
    uv_loop_init(&w.loop);
    dd_ctx ctx = {.loop = &w.loop, .log = cli->log, .metrics = cli->metrics, .cfg = &cli->cfg};
    code = dd_cli_store_open(cli, &ctx, &w.s);
    if (code)
        goto out;
    dd_info(cli->log, "last_will_start", "server_id=%s from=%s", id, dd_buf_str(&from));
    uint64_t end = dd_mono_ms() + DD_LW_RETRY_MS;
    /* the records, again while Redis cannot be reached (bounded) */
    for (;;) {
        w.listed = false;
        int rc = dd_store_list(w.s, 0, dd_lw_listed, &w);
        if (rc < 0) {
            w.listed = true;
            w.list_status = rc;
        }
        while (!w.listed && uv_run(&w.loop, UV_RUN_ONCE))
            ;
        if (w.list_status == 0 || !dd_lw_retryable(w.list_status) ||
            dd_mono_ms() + DD_LW_RETRY_STEP_MS >= end)
            break;
        dd_lw_wait(&w, DD_LW_RETRY_STEP_MS);
    }
    if (w.list_status < 0) {
        code = dd_cli_redis_fail(cli, w.s, w.list_status, "the dispatchers' records");
        dd_error(cli->log, "last_will_failed", "server_id=%s error=%s", id,
                 dd_strerror(w.list_status));
        goto out;
    }
    /* every release at once; those Redis did not take, again (bounded) */
    int released = 0, fenced = 0, failed = 0;
    for (;;) {
        for (size_t i = 0; i < w.n; i++) {
            dd_lw_rec *r = &w.recs[i];
            if (r->done)
                continue;
            int64_t ttl = r->ttl_ms > 0 ? r->ttl_ms : cli->cfg.stale_threshold_ms;
            dd_store_let_go_args a = {.workflow_id = r->workflow_id,
                                      .run_id = r->run_id,
                                      .first_run_id = r->first_run_id,
                                      .epoch = r->epoch,
                                      .expire = true,
                                      .ack_holder = id,
                                      .ack_ttl_ms = 2 * ttl};
            r->status = 1;
            int rc = dd_store_let_go(w.s, &a, dd_lw_answered, r);
            if (rc < 0)
                r->status = rc;
        }
        bool again = false;
        for (;;) {
            bool waiting = false;
            for (size_t i = 0; i < w.n && !waiting; i++)
                waiting = !w.recs[i].done && w.recs[i].status == 1;
            if (!waiting || !uv_run(&w.loop, UV_RUN_ONCE))
                break;
        }
        bool last = dd_mono_ms() + DD_LW_RETRY_STEP_MS >= end;
        for (size_t i = 0; i < w.n; i++) {
            dd_lw_rec *r = &w.recs[i];
            if (r->done)
                continue;
            if (r->status == 1)
                r->status = DD_ETIMEOUT;
            if (dd_lw_retryable(r->status) && !last) {
                again = true;
                continue;
            }
            r->done = true;
            if (r->status == 0) {
                released++;
                dd_info(cli->log, "last_will_released",
                        "workflow_id=%s run_id=%s epoch=%lld mode=expire", r->workflow_id,
                        r->run_id, (long long)r->epoch);
            } else if (r->status == DD_EFENCED) {
                fenced++;
                dd_info(cli->log, "last_will_fenced",
                        "workflow_id=%s run_id=%s epoch=%lld holder=%s note=%s", r->workflow_id,
                        r->run_id, (long long)r->epoch, r->holder,
                        "a newer owner holds it (or it is gone): left alone");
            } else {
                failed++;
                dd_error(cli->log, "last_will_failed", "workflow_id=%s run_id=%s epoch=%lld error=%s",
                         r->workflow_id, r->run_id, (long long)r->epoch, dd_strerror(r->status));
            }
        }
        if (!again)
            break;
        dd_lw_wait(&w, DD_LW_RETRY_STEP_MS);
    }
    if (released + fenced + failed + w.already + w.malformed == 0)
        dd_info(cli->log, "last_will_done",
                "server_id=%s released=0 fenced=0 failed=0 already=0 skipped=0 note=%s", id,
                "no record of this server id: nothing to release (a clean stop releases them "
                "itself)");
    else
        dd_info(cli->log, "last_will_done",
                "server_id=%s released=%d fenced=%d failed=%d already=%d skipped=%d", id,
                released, fenced, failed, w.already, w.malformed);
    if (failed)
        code = dd_cli_fail(cli, "last-will: %d of %zu records could not be released (%s): they "
                                "go stale by the threshold instead",
                           failed, w.n, dd_store_last_error(w.s)[0] ? dd_store_last_error(w.s)
                                                                     : "see the log");
out:
    if (w.s)
        dd_store_close(w.s, NULL, NULL);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    uv_loop_close(&w.loop);
    for (size_t i = 0; i < w.n; i++) {
        free(w.recs[i].workflow_id);
        free(w.recs[i].run_id);
        free(w.recs[i].first_run_id);
    }
    free(w.recs);
    free(id);
    dd_buf_release(&from);
    return code;
}
