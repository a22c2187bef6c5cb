/* cmd_stack.c - `dispatchd stack start|stop|status [temporal|redis]`. */
#include "cli/cli.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/time.h"
#include "proc/proc.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

typedef struct dd_start_wait {
    bool exited;
    int64_t status;
    int sig;
} dd_start_wait;

static void dd_start_on_exit(uv_process_t *p, int64_t status, int sig)
{
    dd_start_wait *w = p->data;
    w->exited = true;
    w->status = status;
    w->sig = sig;
}

static void dd_print_log_tail(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > 2000 ? size - 2000 : 0, SEEK_SET);
    char buf[2048];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "--- last lines of %s ---\n%s\n---\n", path, buf);
}

/* Starts one service detached and waits until it answers. *started says
 * whether this call started it (so a later failure can stop it again). */
static int dd_stack_start_one(dd_cli *cli, dd_service *s, bool *started)
{
    char err[512], where[128];
    dd_health h;
    *started = false;
    dd_service_describe(s, where, sizeof(where));
    int fd = dd_stack_prepare(s, cli->log, &h, err, sizeof(err));
    if (fd == DD_ECONFLICT) {
        printf("%s: already running (pid %d) at %s\n", s->name, (int)h.status.ident.pid, where);
        return DD_EXIT_OK;
    }
    if (fd < 0)
        return dd_cli_fail(cli, "%s", err);

    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_process_t proc;
    memset(&proc, 0, sizeof(proc)); /* type 0: not initialised (dd_service_spawn) */
    dd_start_wait w = {0};
    char token[40];
    dd_stack_token(token, sizeof(token));
    dd_status st;
    int rc = dd_service_spawn(&loop, s, fd, token, 0, &proc, dd_start_on_exit, &st, err,
                              sizeof(err));
    proc.data = &w; /* after uv_spawn, which initialises the handle (data included) */
    close(fd);
    int code = DD_EXIT_OK;
    if (rc < 0) {
        /* a port taken by another process is bad input (README: exit codes) */
        code = rc == DD_EBUSY ? dd_cli_refuse(cli, "%s", err) : dd_cli_fail(cli, "%s", err);
        if (proc.pid > 0) /* running without a status file: nobody could find it */
            kill(-proc.pid, SIGKILL);
        goto out;
    }
    uint64_t start = dd_mono_ms();
    for (;;) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (w.exited) {
            code = dd_cli_fail(cli, "%s exited during start-up (status %lld, signal %d)", s->name,
                               (long long)w.status, w.sig);
            dd_print_log_tail(s->log_path);
            unlink(s->status_path);
            goto out;
        }
        if (dd_probe_run(s->probe_port, s->probe_req, s->probe_expect, 500) == 0)
            break;
        if ((int64_t)(dd_mono_ms() - start) > s->start_timeout_ms) {
            code = dd_cli_fail(cli, "%s did not answer on port %d within %lld ms; stopped it",
                               s->name, s->probe_port, (long long)s->start_timeout_ms);
            dd_print_log_tail(s->log_path);
            dd_stack_kill(s, &st, 2000, cli->log);
            goto out;
        }
        struct timespec d = {0, 50 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    *started = true;
    printf("%s: started (pid %d) at %s in %llu ms\n", s->name, (int)st.ident.pid, where,
           (unsigned long long)(dd_mono_ms() - start));
out:
    /* Close the handle exactly once, and only if uv_spawn initialised it.
     * Closing it does not stop the server: it runs detached. */
    if (proc.type == UV_PROCESS)
        uv_close((uv_handle_t *)&proc, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return code;
}

/* Before starting anything: every port of every service that is not running
 * yet must be free, so a taken port refuses the whole start instead of
 * leaving the services before it running. A port taken a moment later is
 * still caught by the spawn, and dd_cmd_stack stops what it started. */
static int dd_stack_precheck_ports(dd_cli *cli, dd_service *svcs, int n)
{
    char err[512];
    for (int i = 0; i < n; i++) {
        if (dd_lock_held(svcs[i].lock_path))
            continue; /* running (or starting): its own ports are taken by it */
        if (dd_service_check_ports(&svcs[i], err, sizeof(err)) < 0)
            return dd_cli_refuse(cli, "%s; nothing was started", err);
    }
    return DD_EXIT_OK;
}

/* The port options of service s, and whether any of them was given. */
static bool dd_stack_ports_given(const dd_cli *cli, const dd_service *s)
{
    if (s->kind == DD_SVC_REDIS)
        return dd_config_source(&cli->cfg, "redis-port") != DD_SRC_DEFAULT;
    return dd_config_source(&cli->cfg, "temporal-http-port") != DD_SRC_DEFAULT ||
           dd_config_source(&cli->cfg, "temporal-port") != DD_SRC_DEFAULT;
}

/* `stack status --state-dir D` (and a `stack start` of a running service)
 * without the port options: the status file in D records the ports the
 * service runs on, as `stack stop` finds the processes by its token. The
 * defaults would probe another server, or none, and call a healthy stack
 * DOWN. Ports given explicitly are used as given (and a mismatch is
 * reported by dd_stack_port_hint). */
static void dd_stack_ports_from_status(const dd_cli *cli, dd_service *s, bool only_if_running)
{
    if (dd_stack_ports_given(cli, s))
        return;
    if (only_if_running && !dd_lock_held(s->lock_path))
        return;
    dd_status st;
    if (dd_status_read(s->status_path, &st) != 0 || st.nports != s->nports)
        return;
    for (int i = 0; i < st.nports; i++)
        if (st.ports[i] < 1 || st.ports[i] > 65535)
            return;
    for (int i = 0; i < st.nports; i++)
        s->ports[i] = st.ports[i];
    s->probe_port = s->ports[0];
}

/* A service not healthy on the ports asked about, whose status file names
 * other ports: say so, it is the likely mistake. */
static void dd_stack_port_hint(const dd_service *s, dd_health *h)
{
    if (h->healthy || !h->have_status || h->status.nports < 1 ||
        h->status.ports[0] == s->ports[0])
        return;
    char more[128];
    dd_msgf(more, sizeof(more), "; its status file says it runs on port %d, not %d (omit the "
                                "port options to use the recorded ports)",
            h->status.ports[0], s->ports[0]);
    size_t n = strlen(h->detail);
    dd_msgf(h->detail + n, sizeof(h->detail) - n, "%s", more);
}

/* pid of a live `dispatchd up` supervising this state dir, or 0. */
static pid_t dd_up_running(const dd_cli *cli)
{
    char *lock = dd_strdupf("%s/up.lock", cli->cfg.state_dir);
    char *status = dd_strdupf("%s/up.status", cli->cfg.state_dir);
    dd_status st;
    pid_t pid = 0;
    if (dd_lock_held(lock) && dd_status_read(status, &st) == 0 &&
        dd_proc_ident_matches(&st.ident))
        pid = st.ident.pid;
    free(lock);
    free(status);
    return pid;
}

static int dd_stack_stop_up(dd_cli *cli, pid_t up)
{
    char *lock = dd_strdupf("%s/up.lock", cli->cfg.state_dir);
    printf("stopping dispatchd up (pid %d), which stops every service it supervises\n", (int)up);
    kill(up, SIGTERM);
    uint64_t start = dd_mono_ms();
    while (dd_lock_held(lock)) {
        if ((int64_t)(dd_mono_ms() - start) > cli->cfg.stop_timeout_ms + 10000) {
            free(lock);
            return dd_cli_fail(cli, "dispatchd up (pid %d) did not stop within %lld ms", (int)up,
                               (long long)cli->cfg.stop_timeout_ms + 10000);
        }
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    free(lock);
    printf("stopped in %llu ms\n", (unsigned long long)(dd_mono_ms() - start));
    return DD_EXIT_OK;
}

static int dd_stack_stop_one(dd_cli *cli, dd_service *s)
{
    dd_health h;
    dd_stack_inspect(s, 500, &h);
    if (!h.lock_held && !h.have_status && !h.status_corrupt) {
        printf("%s: not running\n", s->name);
        return DD_EXIT_OK;
    }
    uint64_t start = dd_mono_ms();
    int rc = dd_stack_kill(s, h.have_status ? &h.status : NULL, cli->cfg.stop_timeout_ms,
                           cli->log);
    if (rc < 0)
        return dd_cli_fail(cli, "%s: some processes survived SIGKILL", s->name);
    printf("%s: stopped in %llu ms\n", s->name, (unsigned long long)(dd_mono_ms() - start));
    return DD_EXIT_OK;
}

static json_t *dd_health_json(const dd_service *s, const dd_health *h)
{
    json_t *ports = json_array();
    for (int i = 0; i < s->nports; i++)
        json_array_append_new(ports, json_integer(s->ports[i]));
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(s->name));
    json_object_set_new(o, "pid", h->have_status && h->lock_held
                                      ? json_integer(h->status.ident.pid)
                                      : json_null());
    json_object_set_new(o, "healthy", json_boolean(h->healthy));
    json_object_set_new(o, "ports", ports);
    json_object_set_new(o, "uptime_s", h->healthy ? json_real((double)(dd_wall_ms() -
                                                                        h->status.started_ms) /
                                                              1000.0)
                                                  : json_null());
    json_object_set_new(o, "lock_held", json_boolean(h->lock_held));
    json_object_set_new(o, "identity_ok", json_boolean(h->identity_ok));
    json_object_set_new(o, "responding", json_boolean(h->responding));
    json_object_set_new(o, "supervisor",
                        h->have_status && h->status.supervisor > 0 &&
                                kill(h->status.supervisor, 0) == 0
                            ? json_integer(h->status.supervisor)
                            : json_null());
    json_object_set_new(o, "detail", json_string(h->detail));
    return o;
}

int dd_cmd_stack(dd_cli *cli)
{
    if (cli->npos < 1)
        return dd_cli_usage_error(cli, "stack needs an action: start, stop or status");
    const char *action = cli->pos[0];
    bool start = !strcmp(action, "start"), stop = !strcmp(action, "stop"),
         status = !strcmp(action, "status");
    if (!start && !stop && !status)
        return dd_cli_usage_error(cli, "unknown stack action '%s' (use start, stop or status)",
                                  action);
    bool want[DD_SVC_COUNT] = {false};
    int nwant = 0;
    for (int i = 1; i < cli->npos; i++) {
        int k = dd_service_kind_parse(cli->pos[i]);
        if (k < 0)
            return dd_cli_usage_error(cli, "unknown service '%s' (use temporal or redis)",
                                      cli->pos[i]);
        if (!want[k])
            nwant++;
        want[k] = true;
    }
    if (nwant == 0)
        for (int k = 0; k < DD_SVC_COUNT; k++)
            want[k] = true;

    dd_service svcs[DD_SVC_COUNT];
    int nsvc = 0, code = DD_EXIT_OK;
    char err[512];
    for (int k = 0; k < DD_SVC_COUNT; k++) {
        if (!want[k])
            continue;
        int rc = dd_service_init(&svcs[nsvc], (dd_service_kind)k, &cli->cfg, dd_cli_self_dir(),
                                 start, err, sizeof(err));
        if (rc < 0) {
            /* a state dir or binary path the user gave that cannot be used */
            code = rc == DD_EINVAL ? dd_cli_refuse(cli, "%s", err) : dd_cli_fail(cli, "%s", err);
            goto out;
        }
        nsvc++;
    }

    for (int i = 0; i < nsvc; i++)
        if (status || start)
            dd_stack_ports_from_status(cli, &svcs[i], start);

    pid_t up = dd_up_running(cli);
    if (stop && up > 0) {
        if (nwant != 0 && nwant != DD_SVC_COUNT) {
            code = dd_cli_fail(cli,
                               "dispatchd up (pid %d) supervises these services and would restart "
                               "one stopped alone; stop up instead (Ctrl-C in its terminal, or "
                               "`dispatchd stack stop` without a service name)",
                               (int)up);
            goto out;
        }
        code = dd_stack_stop_up(cli, up);
        goto out;
    }
    if (status && cli->cfg.json) {
        json_t *arr = json_array();
        for (int i = 0; i < nsvc; i++) {
            dd_health h;
            dd_stack_inspect(&svcs[i], 1000, &h);
            dd_stack_port_hint(&svcs[i], &h);
            if (!h.healthy)
                code = DD_EXIT_FAIL;
            json_array_append_new(arr, dd_health_json(&svcs[i], &h));
        }
        json_t *o = json_pack("{s:o, s:o}", "services", arr, "supervisor",
                              up > 0 ? json_integer(up) : json_null());
        char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        printf("%s\n", text);
        free(text);
        json_decref(o);
        goto out;
    }
    if (status && up > 0)
        printf("supervised by dispatchd up (pid %d)\n", (int)up);
    if (start && (code = dd_stack_precheck_ports(cli, svcs, nsvc)) != DD_EXIT_OK)
        goto out;
    bool started[DD_SVC_COUNT] = {false};
    for (int i = 0; i < nsvc; i++) {
        int rc = DD_EXIT_OK;
        if (start) {
            rc = dd_stack_start_one(cli, &svcs[i], &started[i]);
            if (rc != DD_EXIT_OK) {
                /* all or nothing: stop what this command started */
                for (int j = 0; j < i; j++)
                    if (started[j]) {
                        printf("%s: stopping it again (%s could not start)\n", svcs[j].name,
                               svcs[i].name);
                        dd_stack_stop_one(cli, &svcs[j]);
                    }
                code = rc;
                break;
            }
        } else if (stop) {
            rc = dd_stack_stop_one(cli, &svcs[i]);
        } else {
            dd_health h;
            dd_stack_inspect(&svcs[i], 1000, &h);
            dd_stack_port_hint(&svcs[i], &h);
            char where[128], up_s[32] = "-";
            dd_service_describe(&svcs[i], where, sizeof(where));
            if (h.healthy)
                dd_duration_format(dd_wall_ms() - h.status.started_ms, up_s, sizeof(up_s));
            printf("%-9s %-8s pid=%-7d up=%-8s %s  %s\n", svcs[i].name,
                   h.healthy ? "healthy" : "DOWN", h.lock_held ? (int)h.status.ident.pid : 0,
                   up_s, where, h.detail);
            if (!h.healthy)
                rc = DD_EXIT_FAIL;
        }
        if (rc > code)
            code = rc;
    }
out:
    for (int i = 0; i < nsvc; i++)
        dd_service_release(&svcs[i]);
    return code;
}
