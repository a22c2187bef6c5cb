/* cmd_worker.c - `dispatchd worker`: the worker-side sidecar, and
 * `dispatchd workers P/Q`: who is registered with a dispatcher. */
#include "cli/cli.h"

#include "core/buf.h"
#include "core/error.h"
#include "core/time.h"
#include "dispatchd.h"
#include "owner/id.h"
#include "store/store.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct {
    dd_cli *cli;
    dispatchd_worker *w;
    uv_signal_t sigint, sigterm;
} dd_sidecar;

static void dd_sidecar_stopped(void *arg)
{
    dd_sidecar *sc = arg;
    uv_close((uv_handle_t *)&sc->sigint, NULL);
    uv_close((uv_handle_t *)&sc->sigterm, NULL);
}

static void dd_sidecar_signal(uv_signal_t *h, int signum)
{
    dd_sidecar *sc = h->data;
    uv_signal_stop(&sc->sigint);
    uv_signal_stop(&sc->sigterm);
    dd_info(sc->cli->log, "shutdown_requested", "signal=%d", signum);
    dispatchd_worker_stop(sc->w, dd_sidecar_stopped, sc);
}

int dd_cmd_worker(dd_cli *cli)
{
    if (cli->npos > 0)
        return dd_cli_usage_error(cli, "worker takes no arguments (got '%s')", cli->pos[0]);
    if (cli->cfg.ndispatchers != 1)
        return dd_cli_usage_error(cli, "worker needs exactly one --dispatcher PROJECT/QUEUE");
    if (!cli->cfg.server_id || !*cli->cfg.server_id)
        return dd_cli_usage_error(cli, "worker needs --server-id (the worker's identity)");
    char *project, *queue, err[512];
    /* whole names: a cut one could register the worker with another dispatcher */
    if (dd_config_dispatcher_split(cli->cfg.dispatchers[0], &project, &queue) < 0)
        return dd_cli_usage_error(cli, "--dispatcher '%s': expected PROJECT/QUEUE",
                                  cli->cfg.dispatchers[0]);
    char *pw = NULL;
    if (dd_config_secret("DISPATCHD_REDIS_PASSWORD", cli->cfg.redis_password_file, &pw, err,
                         sizeof(err)) < 0) {
        free(project);
        free(queue);
        return dd_cli_usage_error(cli, "--redis-password-file: %s", err);
    }
    /* The real URL: a password in it is the worker's to use (the store
     * registers it as a log secret). The ***-masked one is for messages. */
    dd_cli_redis_password_warn(cli);
    char *spw = NULL;
    if (dd_cli_redis_sentinel(cli) &&
        dd_config_secret("DISPATCHD_REDIS_SENTINEL_PASSWORD",
                         cli->cfg.redis_sentinel_password_file, &spw, err, sizeof(err)) < 0) {
        free(project);
        free(queue);
        dd_secret_free(pw);
        return dd_cli_usage_error(cli, "--redis-sentinel-password-file: %s", err);
    }
    dispatchd_worker_opts o = {.redis_url = dd_cli_redis_sentinel(cli) ? NULL
                                                                        : dd_cli_redis_url(cli),
                               .redis_sentinel = cli->cfg.redis_sentinel,
                               .redis_master_name = cli->cfg.redis_master_name,
                               .redis_sentinel_password = spw,
                               .redis_db = cli->cfg.redis_db,
                               .redis_password = pw,
                               .project = project,
                               .queue = queue,
                               .server_id = cli->cfg.server_id,
                               .heartbeat_interval_ms = cli->cfg.heartbeat_interval_ms,
                               .id_prefix = cli->cfg.id_prefix,
                               .redis_username = cli->cfg.redis_username,
                               .redis_ca_file = cli->cfg.redis_ca_file,
                               .redis_cert_file = cli->cfg.redis_cert_file,
                               .redis_key_file = cli->cfg.redis_key_file};
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_sidecar sc = {.cli = cli};
    int rc = dispatchd_worker_start(&loop, &o, &sc.w, err, sizeof(err)); /* copies them */
    free(project);
    free(queue);
    dd_secret_free(pw);
    dd_secret_free(spw);
    int code = DD_EXIT_OK;
    if (rc < 0) {
        code = dd_cli_usage_error(cli, "%s", err);
    } else {
        uv_signal_init(&loop, &sc.sigint);
        uv_signal_init(&loop, &sc.sigterm);
        sc.sigint.data = sc.sigterm.data = &sc;
        uv_signal_start(&sc.sigint, dd_sidecar_signal, SIGINT);
        uv_signal_start(&sc.sigterm, dd_sidecar_signal, SIGTERM);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return code;
}

typedef struct {
    bool done;
    int rec_status;
    json_t *out;
    int pending;
    int err;
    int64_t srv_now_ms; /* Redis's clock from the record, 0 unknown */
} dd_workers_q;

static void dd_workers_rec(int st, const dd_store_hb *rec, void *arg)
{
    dd_workers_q *q = arg;
    q->rec_status = st;
    if (st == 0) {
        json_object_set_new(q->out, "owner", rec->server_id ? json_string(rec->server_id)
                                                            : json_null());
        json_object_set_new(q->out, "run_id", rec->run_id ? json_string(rec->run_id)
                                                          : json_null());
        json_object_set_new(q->out, "owner_heartbeat_age_ms",
                            json_integer(rec->now_ms - rec->hb_ms));
        q->srv_now_ms = rec->now_ms; /* Redis's clock: worker ages too */
    } else if (st != DD_ENOTFOUND) {
        q->err = st;
    }
    if (--q->pending == 0)
        q->done = true;
}

static void dd_workers_list(int st, const dd_store_workers *w, void *arg)
{
    dd_workers_q *q = arg;
    json_t *arr = json_array();
    /* replies come in order: the record's (with Redis's clock) came first */
    int64_t now = q->srv_now_ms ? q->srv_now_ms : dd_wall_ms();
    if (st == 0)
        for (size_t i = 0; i < w->n; i++)
            json_array_append_new(arr, json_pack("{s:s, s:I}", "server_id", w->items[i].server_id,
                                                 "heartbeat_age_ms",
                                                 (json_int_t)(now - w->items[i].hb_ms)));
    else
        q->err = st;
    json_object_set_new(q->out, "workers", arr);
    if (--q->pending == 0)
        q->done = true;
}

int dd_cmd_workers(dd_cli *cli)
{
    if (cli->npos != 1)
        return dd_cli_usage_error(cli, "workers needs one PROJECT/QUEUE (got %d arguments)",
                                  cli->npos);
    char *project, *queue, wid[DD_DISPATCHER_ID_BUFLEN], err[512];
    if (dd_config_dispatcher_split(cli->pos[0], &project, &queue) < 0)
        return dd_cli_usage_error(cli, "workers needs one PROJECT/QUEUE (got '%s')",
                                  cli->pos[0]);
    int idrc = dd_dispatcher_id_with(cli->cfg.id_prefix, project, queue, wid, sizeof(wid), err,
                                     sizeof(err));
    free(project);
    free(queue);
    if (idrc < 0)
        return dd_cli_usage_error(cli, "'%s': %s", cli->pos[0], err);
    uv_loop_t loop;
    uv_loop_init(&loop);
    dd_ctx ctx = {.loop = &loop, .log = cli->log, .metrics = cli->metrics, .cfg = &cli->cfg};
    dd_store *s = NULL;
    int code = dd_cli_store_open(cli, &ctx, &s);
    dd_workers_q q = {.out = json_object()};
    if (code == 0) {
        json_object_set_new(q.out, "dispatcher", json_string(cli->pos[0]));
        json_object_set_new(q.out, "workflow_id", json_string(wid));
        if (dd_store_get(s, wid, dd_workers_rec, &q) == 0)
            q.pending++;
        if (dd_store_worker_list(s, wid, dd_workers_list, &q) == 0)
            q.pending++;
        if (q.pending < 2)
            q.err = DD_EUNAVAIL;
        while (!q.done && q.pending > 0 && uv_run(&loop, UV_RUN_ONCE))
            ;
        json_t *workers = json_object_get(q.out, "workers");
        if (q.err) {
            code = dd_cli_redis_fail(cli, s, q.err, cli->pos[0]);
        } else if (q.rec_status == DD_ENOTFOUND && json_array_size(workers) == 0) {
            code = dd_cli_fail(cli,
                               "unknown dispatcher '%s': no owner record and no workers in %s",
                               cli->pos[0], dd_cli_redis_url_safe(cli));
        } else {
            bool owned = q.rec_status == 0;
            json_object_set_new(q.out, "state", json_string(owned ? "owned" : "waiting"));
            if (!owned)
                json_object_set_new(q.out, "owner", json_null());
            if (cli->cfg.json) {
                char *text = json_dumps(q.out, JSON_INDENT(2));
                printf("%s\n", text);
                free(text);
            } else {
                const char *owner = json_string_value(json_object_get(q.out, "owner"));
                printf("%s (%s): %s\n", cli->pos[0], wid,
                       owned ? "owned" : "waiting: no owner yet, workers are registered");
                if (owned)
                    printf("  owner  %s  run %s\n", owner ? owner : "-",
                           json_string_value(json_object_get(q.out, "run_id")));
                size_t i;
                json_t *w;
                json_array_foreach(workers, i, w)
                {
                    char age[32];
                    dd_duration_format(json_integer_value(json_object_get(w, "heartbeat_age_ms")),
                                       age, sizeof(age));
                    printf("  worker %-30s heartbeat %s ago\n",
                           json_string_value(json_object_get(w, "server_id")), age);
                }
                if (json_array_size(workers) == 0)
                    printf("  no workers registered\n");
            }
        }
        dd_store_close(s, NULL, NULL);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    json_decref(q.out);
    return code;
}
