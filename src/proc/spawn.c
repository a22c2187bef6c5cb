/* spawn.c - start one service process the way the lock design needs it. */
#include "proc/proc.h"

#include "core/buf.h"
#include "core/env.h"
#include "core/error.h"
#include "core/time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>


int dd_service_check_ports(const dd_service *s, char *err, size_t errlen)
{
    static const char *const opt[DD_SVC_COUNT][DD_MAX_PORTS] = {
        [DD_SVC_REDIS] = {"--redis-port"},
        [DD_SVC_TEMPORAL] = {"--temporal-http-port", "--temporal-port"},
    };
    for (int i = 0; i < s->nports; i++) {
        if (dd_proc_port_free(s->ports[i]) == 0)
            continue;
        const char *o = opt[s->kind][i] ? opt[s->kind][i] : "a --*-port option";
        pid_t owner = dd_proc_port_owner(s->ports[i]);
        dd_proc_info info = {0};
        if (owner > 0 && dd_proc_read(owner, &info) == 0)
            dd_msgf(err, errlen,
                    "%s: port %d on 127.0.0.1 is already in use by pid %d (%s), which dispatchd "
                    "did not start; stop it or choose another port (%s)",
                    s->name, s->ports[i], (int)owner, info.comm, o);
        else
            dd_msgf(err, errlen,
                    "%s: port %d on 127.0.0.1 is already in use by another process; stop it or "
                    "choose another port (%s)",
                    s->name, s->ports[i], o);
        return DD_EBUSY;
    }
    return 0;
}

int dd_service_spawn(uv_loop_t *loop, const dd_service *s, int lockfd, const char *token,
                     pid_t supervisor, uv_process_t *proc, dd_spawn_exit_cb exit_cb, dd_status *st,
                     char *err, size_t errlen)
{
    int rc = 0, logfd = -1;
    char **env = NULL;
    char *token_var = NULL;
    /* the status file holds the token whole, or the kill could miss processes */
    if (strlen(token) >= sizeof(st->token)) {
        dd_msgf(err, errlen, "service token '%s' is longer than %zu bytes", token,
                sizeof(st->token) - 1);
        return DD_EINVAL;
    }
    if ((rc = dd_service_check_ports(s, err, errlen)) < 0)
        return rc;

    logfd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        rc = -errno;
        dd_msgf(err, errlen, "cannot open log file '%s': %s", s->log_path, strerror(errno));
        goto out;
    }

    token_var = dd_strdupf("DISPATCHD_SERVICE_TOKEN=%s", token);
    const char *extra[] = {token_var, NULL};
    env = dd_env_with(extra); /* an inherited token never shadows ours */

    uv_stdio_container_t stdio[4];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = logfd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = logfd;
    stdio[3].flags = UV_INHERIT_FD; /* the lock: held as long as the server lives */
    stdio[3].data.fd = lockfd;
    uv_process_options_t opts = {
        .exit_cb = (uv_exit_cb)exit_cb,
        .file = s->argv[0],
        .args = (char **)s->argv,
        .env = env,
        .flags = UV_PROCESS_DETACHED, /* setsid(): own session and process group */
        .stdio_count = 4,
        .stdio = stdio,
    };
    rc = uv_spawn(loop, proc, &opts);
    if (rc < 0) {
        dd_msgf(err, errlen, "cannot start %s ('%s'): %s", s->name, s->argv[0],
                uv_strerror(rc));
        goto out;
    }

    memset(st, 0, sizeof(*st));
    dd_msgf(st->service, sizeof(st->service), "%s", s->name); /* "redis", "temporal" */
    rc = dd_proc_ident_of(proc->pid, &st->ident);
    if (rc < 0) {
        /* Died before we could look: report it, the exit callback follows. */
        st->ident.pid = proc->pid;
        st->ident.start_ticks = 1;
        rc = 0;
    }
    for (int i = 0; i < s->nports; i++)
        st->ports[st->nports++] = s->ports[i];
    st->started_ms = dd_wall_ms();
    memcpy(st->token, token, strlen(token) + 1); /* checked above */
    st->supervisor = supervisor;
    /* the command is shown to humans (status): a long one ends in "..." */
    dd_buf cmd = DD_BUF_INIT;
    for (int i = 0; s->argv[i]; i++)
        dd_buf_printf(&cmd, "%s%s", i ? " " : "", s->argv[i]);
    dd_msgf(st->cmd, sizeof(st->cmd), "%s", dd_buf_str(&cmd));
    dd_buf_release(&cmd);
    rc = dd_status_write(s->status_path, st);
    if (rc < 0)
        dd_msgf(err, errlen, "cannot write status file '%s': %s", s->status_path,
                dd_strerror(rc));
out:
    if (logfd >= 0)
        close(logfd);
    free(env);
    free(token_var);
    return rc;
}
